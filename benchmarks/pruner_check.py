"""Does the pruner stop a trial that would have been the rung's best? The median pruner against the paired one.

Every trial of a small grid (each rung x learning rates, same epochs) is trained to the end once,
without pruning, through ``advisor.training.train.train_run``; each evaluation's score and predictions on
the sampled validation rows (``train.eval_rows``) are recorded. Then both pruners are replayed on
those records, for every order in which the rung's trials could have been run: the median pruner
greenladder shipped before (optuna's ``MedianPruner``, one startup trial, no pruning before the end
of the first epoch, pruning also at the last evaluation as its callback did) and the paired pruner
(``advisor.climb.pruning``: the trial is stopped only when it is worse than the best finished trial on the
same sampled rows, paired bootstrap and exact McNemar agreeing, at ``criteria.confidence`` with
Bonferroni over its evaluations). Both replays run the very ``PruningCallback`` the climb uses.

For each rung and pruner the table says how often the rung's best trial (by its whole-validation
score trained to the end) was stopped, how many points the best surviving trial lost against it,
and the share of the rung's training FLOPs the stopped trials would have saved (pro rata of the
steps not trained: an estimate). The replay runs every trial of a rung; the climb stops at the first
trial that passes, so it runs fewer.

    python benchmarks/pruner_check.py --quick
    python benchmarks/pruner_check.py --data uncertainty          # 2 rungs x 3 learning rates, 3 epochs

With ``--work``, trained records are cached there (``pruner_runs.jsonl``), keyed on the SHA-256 of
the split as read and every training setting, so a rerun with the same ``--work`` only replays.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from common import (
    BenchError,
    add_run_options,
    cache_key,
    data_digest,
    data_slug,
    markdown_table,
    open_results,
    run_cli,
    say,
    split_for,
    work_folder,
)

from advisor.training.stopping import RunWatcher

PRUNERS = ("median (before)", "paired (now)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="uncertainty", help="built-in dataset name, a file or a folder")
    p.add_argument("--out", default=None, help="folder for the results (default benchmarks/results/)")
    p.add_argument("--rungs", default="minilm-l3,minilm-l6")
    p.add_argument("--lrs", default="3e-5,1e-4,3e-4", help="learning rates tried on every rung")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--train-rows", type=int, default=None, help="stratified training subset (default 400; quick 160)")
    p.add_argument("--eval-rows", type=int, default=None, help="validation and test rows (default 300; quick 120)")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="minilm-l3 only, lr 1e-4 and 3e-4, 2 epochs, small split")
    add_run_options(p, "folder for the split, the run folders and the record cache, kept (default: temporary)")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.slug = data_slug(args.data)  # a missing file fails here, before anything is written
    if args.quick:
        args.rungs = "minilm-l3" if args.rungs == "minilm-l3,minilm-l6" else args.rungs
        args.lrs = "1e-4,3e-4" if args.lrs == "3e-5,1e-4,3e-4" else args.lrs
        args.epochs = 2.0 if args.epochs == 3.0 else args.epochs
    args.train_rows = args.train_rows or (160 if args.quick else 400)
    args.eval_rows = args.eval_rows or (120 if args.quick else 300)
    args.rung_list = [r.strip() for r in args.rungs.split(",") if r.strip()]
    args.lr_list = [float(x) for x in args.lrs.split(",")]
    return args


def result_name(args: argparse.Namespace) -> tuple[str, str]:
    quick = " (quick)" if args.quick else ""
    return f"pruner_check-{args.slug}" + ("-quick" if args.quick else ""), f"Pruner check on {args.slug}{quick}"


class Recorder(RunWatcher):
    """Records each evaluation's score and its predictions on the sampled rows.

    A :class:`advisor.training.stopping.RunWatcher`, so ``train_run`` hands it each attempt's best-weight
    keeper (``watch``), whose ``latest`` holds the predictions of the evaluation just made.
    """

    def __init__(self, metric: str) -> None:
        self.key = f"eval_{metric}"
        self.evals: list[dict[str, Any]] = []
        self.labels: list[int] = []
        self.num_labels, self.eval_steps = 2, 0
        self._best: Any = None

    def watch(self, best: Any, num_labels: int) -> None:
        self._best, self.num_labels = best, num_labels

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any) -> None:
        latest = getattr(self._best, "latest", None)
        if not metrics or self.key not in metrics or latest is None:
            return
        self.labels = [int(x) for x in latest[0]]
        self.eval_steps = int(args.eval_steps or 0)
        value, predictions = float(metrics[self.key]), [int(x) for x in latest[1]]
        self.evals.append({"step": int(state.global_step), "value": value, "predictions": predictions})


def train_trials(
    args: argparse.Namespace, folder: Path, work: Path, data: Any, cache: Path | None
) -> list[dict[str, Any]]:
    """Every (rung, lr) trained to the end without pruning, its evaluations recorded; read back from ``cache``."""
    from advisor.config.settings import build_config
    from advisor.models.ladder import candidate_for, load_ladder, materialise
    from advisor.runkey import RunKey
    from advisor.training.train import train_run

    config = build_config(
        extra={
            "data": {"source": str(folder), "split_seed": args.seed},
            "train": {"max_length": args.max_length, "epochs": args.epochs, "seed": args.seed},
            "output": {"out": str(work / "runs")},
        }
    )
    ladder = {r.name: r for r in load_ladder(config.ladder.name)}
    digest = data_digest(data)
    done = {}
    if cache is not None and cache.exists():
        records = map(json.loads, cache.read_text(encoding="utf-8").splitlines())
        done = {r["key"]: r for r in records if r.get("key") and r.get("evals")}  # none recorded: train again
    trials = []
    for rung_name, lr in itertools.product(args.rung_list, args.lr_list):
        t = config.train
        settings = {"rung": ladder[rung_name].source, "lr": lr, "epochs": t.epochs, "max_length": t.max_length}
        settings |= {"seed": t.seed, "eval_rows": t.eval_rows, "evals_per_epoch": t.evals_per_epoch}
        key = cache_key(digest, {**settings, "batch_size": t.batch_size, "rules": config.rules.enabled})
        if key in done:
            say(f"{rung_name} lr {lr:g}: read back from {cache}")
            trials.append(done[key])
            continue
        recorder = Recorder(config.criteria.metric)
        hp = {"learning_rate": lr, "epochs": args.epochs}
        source = str(materialise(ladder[rung_name], config.ladder.cache_dir))
        run = train_run(
            candidate_for(ladder[rung_name]),
            source,
            data,
            config,
            work / "runs",
            RunKey("trial", f"{rung_name}-lr{lr:g}", 1),
            hp,
            save_model=False,
            extra_callbacks=[recorder],
            progress=say,
        )
        record = {
            "key": key,
            "rung": rung_name,
            "learning_rate": lr,
            "status": run.status,
            "final": run.metrics.get(config.criteria.metric),
            "train_flops": run.cost.train_flops,
            "total_steps": run.details.get("total_steps"),
            "eval_steps": recorder.eval_steps,
            "labels": recorder.labels,
            "num_labels": recorder.num_labels,
            "evals": recorder.evals,
        }
        if not recorder.evals:
            raise BenchError(
                f"{rung_name} lr {lr:g}: no sampled evaluation was recorded, so no pruner could stop it; "
                "the replay would show nothing (check train.evals_per_epoch and train.eval_rows)"
            )
        if cache is not None:
            with cache.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        trials.append(record)
    return trials


def replay(
    trials: list[dict[str, Any]], order: tuple[int, ...], pruner_name: str, metric: str, level: float
) -> list[Any]:
    """The step each trial would have been stopped at (None: trained to the end), trials run in ``order``."""
    import optuna

    from advisor.climb.pruning import PairedPruner, PruningCallback

    warmup = min(t["eval_steps"] for t in trials)  # one epoch at one evaluation per epoch, as the climb sets it
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=warmup)
        if pruner_name.startswith("median")
        else PairedPruner(metric, level, warmup_steps=warmup)
    )
    study = optuna.create_study(direction="maximize", pruner=pruner)
    stopped: list[Any] = [None] * len(trials)
    for i in order:
        t, trial = trials[i], study.ask()
        callback = PruningCallback(trial, metric)
        # the median pruner's callback also pruned at the last evaluation; max_steps 0 replays that
        max_steps = 0 if pruner_name.startswith("median") else t["total_steps"]
        for ev in t["evals"]:
            callback.watch(SimpleNamespace(latest=(t["labels"], ev["predictions"])), t["num_labels"])
            control = SimpleNamespace(should_training_stop=False)
            state = SimpleNamespace(global_step=ev["step"], max_steps=max_steps)
            callback.on_evaluate(
                SimpleNamespace(eval_steps=t["eval_steps"]), state, control, {f"eval_{metric}": ev["value"]}
            )
            if control.should_training_stop:
                stopped[i] = ev["step"]
                break
        if stopped[i] is None and t["final"] is not None:
            study.tell(trial, t["final"])
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return stopped


def summarise(rung: str, trials: list[dict[str, Any]], metric: str, level: float) -> tuple[list[list[Any]], dict]:
    """Both pruners over every order of the rung's trials: table rows and the raw outcomes."""
    finals = [t["final"] if t["final"] is not None else float("-inf") for t in trials]
    best = max(range(len(trials)), key=lambda i: finals[i])
    total_flops = sum(t["train_flops"] for t in trials)
    rows, raw = [], {"rung": rung, "best_trial": trials[best]["learning_rate"], "pruners": {}}
    orders = list(itertools.permutations(range(len(trials))))
    for name in PRUNERS:
        outcomes = [replay(trials, order, name, metric, level) for order in orders]
        pruned = sum(s is not None for stopped in outcomes for s in stopped)
        best_pruned = sum(stopped[best] is not None for stopped in outcomes)
        lost = [
            100 * (finals[best] - max(f for f, s in zip(finals, stopped, strict=True) if s is None))
            for stopped in outcomes
        ]
        saved = [
            sum(
                t["train_flops"] * (t["total_steps"] - s) / t["total_steps"]
                for t, s in zip(trials, stopped, strict=True)
                if s is not None
            )
            for stopped in outcomes
        ]
        raw["pruners"][name] = [{"order": list(o), "stopped_at": s} for o, s in zip(orders, outcomes, strict=True)]
        rows.append(
            [
                rung,
                name,
                len(orders),
                f"{pruned} of {len(orders) * len(trials)}",
                f"{best_pruned} of {len(orders)}",
                statistics.fmean(lost),
                f"{statistics.fmean(saved) / total_flops:.1%}" if total_flops else "n/a (no FLOPs)",
            ]
        )
    return rows, raw


def _trial_notes(trials: list[dict[str, Any]], metric: str) -> list[str]:
    notes = []
    for t in trials:
        sampled = ", ".join(f"{e['value']:.3f}@{e['step']}" for e in t["evals"])
        final = f"{t['final']:.3f}" if t["final"] is not None else t["status"]
        notes.append(f"{t['rung']} lr {t['learning_rate']:g}: whole-validation {metric} {final}; sampled {sampled}.")
    return notes


def main(argv: list[str] | None = None) -> int:
    import optuna

    args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a study per replayed order: no line for each
    writer, title = open_results("pruner_check.py", argv, args, result_name, "rung's outcomes")
    with work_folder(args.work, f"pruner-{args.slug}-") as work:
        data, folder = split_for(args, f"pruner-{args.slug}", root=work)
        cache = args.work.expanduser() / "pruner_runs.jsonl" if args.work is not None else None
        trials = train_trials(args, folder, work, data, cache)
    from advisor.config.settings import build_config

    criteria = build_config().criteria
    metric, level = criteria.metric, criteria.confidence
    table, raw, notes = [], [], []
    for rung in args.rung_list:
        mine = [t for t in trials if t["rung"] == rung]
        rows, outcome = summarise(rung, mine, metric, level)
        writer.record(rung, outcome)
        table += rows
        raw.append({**outcome, "trials": mine})
        notes += _trial_notes(mine, metric)
    headers = [
        "rung",
        "pruner",
        "orders replayed",
        "trials stopped",
        "the rung's best trial stopped",
        "best score lost (mean pts)",
        "training FLOPs saved (est.)",
    ]
    notes += [
        f"Data: `{args.data}`, train {data.train.num_rows} / validation {data.validation.num_rows} rows (seed {args.seed}); "
        f"{args.epochs:g} epochs, one evaluation per epoch on a {build_config().train.eval_rows}-row sample; paired pruner "
        f"at {level:.0%} before the Bonferroni correction.",
        "Best score lost: the rung's best whole-validation score minus the best among the trials not stopped.",
    ]
    writer.finish(title, [markdown_table(headers, table)], notes, raw)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
