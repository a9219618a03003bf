"""Model selection: greenladder ``advise`` against the searches a user would run instead.

Methods, all on the same split, seed, ladder, maximum length and acceptance criteria:

* **greenladder**: ``advisor.advise.advise`` (baseline, then rungs smallest first, stop at the first
  run that meets the criteria);
* **exhaustive**: every rung x a grid of learning rates and epochs, best validation metric wins;
* **optuna TPE**: one study over the flat space (rung x learning rate x epochs), as many trials as
  the grid has;
* **FLAML**: ``AutoML(task="seq-classification")`` over the same rungs, with a time budget equal to
  greenladder's wall time, and again with a multiple of it.

greenladder, exhaustive and optuna train through ``advisor.training.train.train_run``, so every one of their
trainings is metered identically (analytic FLOPs from the tokens each forward pass saw, codecarbon
energy, wall time). FLAML trains with its own loop: its wall time and energy are metered around
``fit``; its FLOPs are *estimated* from its trial log (real tokens only, padding not counted).

Every method's pick is judged the way ``advise`` judges a run (``benchmarks/judging.py``): the
interval of its validation metric at ``criteria.confidence``, pass when the lower bound clears the
floor, undecided when the interval straddles it. Selection overhead = total compute of the method /
compute of one training of the model it picked.

    python benchmarks/select_models.py --quick
    python benchmarks/select_models.py --data spamassassin          # 400 training rows, 64 tokens: < 30 min
    python benchmarks/select_models.py --quick --data "my data/sentences.csv" --out /tmp/results --work /tmp/runs

Each method's row is printed and appended to ``<out>/<name>.jsonl`` as soon as the method finishes;
``<name>`` comes from the data's slug (file stem + content hash), never from the raw path. Each row
of ``<name>.json`` holds the picked run's and the closest run's metrics, interval and verdict, and
greenladder's own report is copied to ``<out>/<name>-greenladder-report.json``. The runs (models,
ledgers, the split) go to a new folder under ``--work``, kept; without it, to a temporary folder
removed at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    DEFAULT_TARGETS,
    BenchError,
    add_run_options,
    data_digest,
    data_slug,
    earlier_rows,
    open_results,
    run_cli,
    safe_name,
    say,
    split_for,
    work_folder,
)
from judging import closest_evidence, evidence, judge_run, judge_runs, predictions_run
from select_tables import reuse_notes, tables, trial_log, verdict_notes

from advisor.runkey import RunKey

DEFAULT_METHODS = "greenladder,exhaustive,optuna,flaml"
DEFAULT_TRAIN_ROWS = 400


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default="uncertainty", help="built-in dataset name, a file or a folder (as advise --data)")
    p.add_argument("--out", default=None, help="folder for the results (default benchmarks/results/)")
    p.add_argument("--target", default=None, help="metric=floor, e.g. accuracy=0.79 (per-dataset default)")
    p.add_argument("--rungs", default="minilm-l3,minilm-l6", help="ladder rungs, smallest first")
    p.add_argument(
        "--train-rows", type=int, default=None, help="stratified subset of the training split (default 400; quick 200)"
    )
    p.add_argument(
        "--eval-rows", type=int, default=None, help="subset of validation and of test (default 300; quick 100)"
    )
    p.add_argument("--max-length", type=int, default=None, help="tokens per text (default 64)")
    p.add_argument(
        "--lrs", default="3e-5,1e-4,3e-4", help="learning-rate grid (exhaustive); its range bounds optuna/FLAML"
    )
    p.add_argument("--epochs", default="3", help="epochs grid (exhaustive); its range bounds optuna/FLAML")
    p.add_argument("--gl-epochs", type=float, default=None, help="greenladder's default first trial (train.epochs)")
    p.add_argument("--trials-per-rung", type=int, default=2, help="greenladder's tuning.trials_per_rung")
    p.add_argument(
        "--flaml-multiples", default="1,3", help="FLAML budgets as multiples of greenladder's wall time (quick: 1)"
    )
    p.add_argument("--methods", default=DEFAULT_METHODS)
    p.add_argument("--seed", type=int, default=0)
    add_run_options(
        p, "folder for the runs (models, greenladder's run directory, the split), kept; default: temporary, removed"
    )
    reuse = "train every run, also one another method already trained with the same settings and seed"
    p.add_argument("--no-reuse", action="store_true", help=reuse)
    p.add_argument(
        "--resume",
        action="store_true",
        help="read back the methods the latest earlier run of these settings finished (its rows in <name>.jsonl)\n"
        "and run only the others; FLAML's budget then comes from greenladder's recorded wall time",
    )
    p.add_argument(
        "--quick", action="store_true", help="200 training rows, 64 tokens, 1 epoch, FLAML at 1x only: under 5 minutes"
    )
    return p


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    args.slug = data_slug(args.data)  # before anything is trained: a missing file fails here
    if args.quick:
        # a smoke run under 5 minutes on 2 cores: FLAML gets greenladder's time once, not 1x + 3x
        # (4x greenladder's time would be most of the five minutes on its own)
        args.train_rows = args.train_rows or 200
        args.eval_rows = args.eval_rows or 100
        args.max_length = 64
        args.lrs = "1e-4,3e-4" if args.lrs == "3e-5,1e-4,3e-4" else args.lrs
        args.epochs = "1" if args.epochs == "3" else args.epochs
        args.flaml_multiples = "1" if args.flaml_multiples == "1,3" else args.flaml_multiples
    else:
        # sized for 30 minutes on 2 CPU cores: SpamAssassin at 500 training rows took 40 (grid and
        # optuna train 6 times each, FLAML gets 4x greenladder's time on top)
        args.train_rows = args.train_rows or DEFAULT_TRAIN_ROWS
        args.eval_rows = args.eval_rows or 300
        args.max_length = args.max_length or 64
    if args.target is None:
        metric, floor = DEFAULT_TARGETS.get(args.data, ("accuracy", 0.8))
    else:
        metric, _, value = args.target.partition("=")
        floor = float(value)
    args.metric, args.floor = metric, floor
    args.rung_list = [r.strip() for r in args.rungs.split(",") if r.strip()]
    args.lr_list = [float(x) for x in args.lrs.split(",")]
    args.epoch_list = [float(x) for x in args.epochs.split(",")]
    if args.gl_epochs is None:
        args.gl_epochs = min(args.epoch_list) if args.quick else 3.0
    return args


def make_config(args: argparse.Namespace, folder: Path, out: Path) -> Any:
    from advisor.config.settings import build_config

    return build_config(
        extra={
            "data": {"source": str(folder), "split_seed": args.seed},
            "ladder": {"rungs": args.rung_list},
            "train": {"max_length": args.max_length, "epochs": args.gl_epochs, "seed": args.seed},
            "tuning": {
                "trials_per_rung": args.trials_per_rung,
                "lr_min": min(args.lr_list),
                "lr_max": max(args.lr_list),
                "epochs_min": min(args.epoch_list),
                "epochs_max": max(args.epoch_list),
            },
            "criteria": {"metric": args.metric, "floor": args.floor},
            # kept so that another method can reuse an identical run's model (storage only, no compute)
            "output": {"out": str(out), "keep_checkpoints": True},
        }
    )


def rung_sources(config: Any) -> dict[str, tuple[Any, str]]:
    """rung name -> (Rung, local folder), in ladder order."""
    from advisor.models.ladder import load_ladder, materialise

    wanted = list(config.ladder.rungs)
    rungs = {r.name: r for r in load_ladder(config.ladder.name)}
    missing = [w for w in wanted if w not in rungs]
    if missing:
        raise SystemExit(f"unknown rungs {missing}; the ladder has {list(rungs)}")
    return {w: (rungs[w], str(materialise(rungs[w], config.ladder.cache_dir, progress=say))) for w in wanted}


def test_eval(run: Any, run_dir: Path, data: Any, config: Any) -> tuple[dict[str, float], Any]:
    """Test metrics of a saved run, metered the way ``advise`` meters its final evaluation."""
    from advisor.data.task import column
    from advisor.metering.cost import Meter
    from advisor.models.loading import load_for_classification
    from advisor.training.counting import MeteringCallback
    from advisor.training.inference import predict_labels
    from advisor.verdicts.criteria import compute_metrics

    with Meter(config.metering, phase=f"test {run.run_id}") as meter:
        model, tok = load_for_classification(str(run_dir / str(run.artifact)), data.label_names)
        counter = MeteringCallback(meter, num_labels=len(data.label_names))
        counter.attach(model)
        preds = predict_labels(model, tok, column(data.test, "text"), config.train.max_length)
        counter.close()
        metrics = compute_metrics(column(data.test, "label"), preds, data.label_names)
    return metrics, meter.cost


def summarise(
    method: str,
    picked: Any,
    test_metrics: dict[str, float] | None,
    runs: list[Any],
    total: Any,
    config: Any,
    wall: float,
    data: Any,
) -> dict[str, Any]:
    """One method's row: its pick judged as ``advise`` judges a run (``judging.judge_run``), its cost and overheads.

    ``verdict`` and ``pick`` hold the pick's interval and reasons; ``closest`` the run that came closest
    when the pick does not pass (or when there is no pick), so that a reader can check the row.
    """
    from advisor.data.task import column

    metric = config.criteria.metric
    verdicts = judge_runs(runs, config.criteria, column(data.validation, "label"), len(data.label_names))
    passed = [r.candidate.name for r in runs if r.run_id in verdicts and verdicts[r.run_id].passed]
    verdict = verdicts.get(picked.run_id) if picked is not None else None
    row: dict[str, Any] = {
        "method": method,
        "picked": picked.candidate.name if picked is not None else None,
        "picked_run": picked.run_id if picked is not None else None,
        "picked_hparams": dict(picked.hyperparameters) if picked is not None else None,
        "validation_metric": picked.metrics.get(metric) if picked is not None else None,
        "test_metric": (test_metrics or {}).get(metric),
        "judged_at": config.criteria.confidence,
        "verdict": verdict.to_dict() if verdict is not None else None,
        "meets_criteria": bool(verdict is not None and verdict.passed),
        "pick": evidence(picked, verdict) if picked is not None else None,
        "closest": closest_evidence(runs, verdicts) if verdict is None or not verdict.passed else None,
        "trainings": sum(1 for r in runs if r.candidate.kind != "baseline"),
        "flops": total.flops,
        "flops_provenance": total.provenance.get("flops", ""),
        "kwh": total.energy_kwh,
        "energy_provenance": total.provenance.get("energy", ""),
        "wall_s": wall,
        "rungs_passing_on_validation": sorted(set(passed)),
        "runs": [r.to_dict() for r in runs],
    }
    one = picked.cost if picked is not None else None
    # a baseline pick has no FLOPs count (not applicable to TF-IDF + LR): its overhead is in kWh only
    row["overhead_flops"] = total.flops / one.flops if one is not None and one.flops > 0 else None
    row["overhead_kwh"] = total.energy_kwh / one.energy_kwh if one is not None and one.energy_kwh > 0 else None
    return row


class RunReuse:
    """Finished runs by everything that determines them, so that no method trains one twice.

    The grid and optuna often ask for a run greenladder has already trained: the same rung, learning
    rate, epochs and seed on the same data (greenladder's default and its probe are grid points).
    Training on the CPU is deterministic, so such a run gives the same model, metrics and cost, and
    is not trained again; the method that asks for it is charged its metered cost (FLOPs, kWh, and
    the metered wall time of its training, validation and latency passes). Only complete runs are
    reused: not one that a rule or the pruner stopped, nor one on a share of the training data. The
    key holds the SHA-256 of the split as read (``common.data_digest``), not the dataset's name.
    """

    def __init__(self, enabled: bool = True, data_sha256: str = "") -> None:
        self.enabled = enabled
        self.data_sha256 = data_sha256
        self._runs: dict[tuple[Any, ...], tuple[Any, str, str]] = {}

    def _key(self, rung: str, hp: dict[str, Any], config: Any) -> tuple[Any, ...]:
        t = config.train
        settings = tuple((k, f"{float(v):.10g}") for k, v in sorted(hp.items()))
        return (
            self.data_sha256,
            rung,
            settings,
            t.max_length,
            t.seed,
            t.evals_per_epoch,
            t.eval_rows,
            config.rules.enabled,
        )

    def add(self, run: Any, run_dir: Path, method: str, config: Any) -> None:
        complete = (
            run.status == "ok"
            and run.artifact
            and run.candidate.kind == "finetune"
            and run.candidate.parent_run is None
            and run.details.get("train_fraction", 1.0) >= 1.0
            and run.details.get("steps") == run.details.get("total_steps")
        )
        if self.enabled and complete:
            key = self._key(run.candidate.name, dict(run.hyperparameters), config)
            self._runs.setdefault(key, (run, str((run_dir / run.artifact).resolve()), f"{method}/{run.run_id}"))

    def find(self, rung: str, hp: dict[str, Any], config: Any, key: Any) -> Any | None:
        """The earlier run as run ``key`` of the asking method, or None when there is none."""
        from advisor.training.train import resolve_hparams

        found = self._runs.get(self._key(rung, resolve_hparams(config, hp), config)) if self.enabled else None
        if found is None:
            return None
        run, artifact, origin = found
        if not Path(artifact).exists():
            return None
        details = {k: v for k, v in run.details.items() if k != "trial_origin"}
        return dataclasses.replace(run, key=key, artifact=artifact, details={**details, "reused_from": origin})


def run_greenladder(args: argparse.Namespace, folder: Path, work: Path, data: Any, reuse: RunReuse) -> dict[str, Any]:
    from advisor.advise import advise

    out = work / "greenladder"
    config = make_config(args, folder, out)
    started = time.perf_counter()
    report = advise(config, progress=say)
    wall = time.perf_counter() - started
    picked = report.recommended
    runs = ([report.baseline] if report.baseline else []) + list(report.runs)
    for run in report.runs:
        reuse.add(run, out, "greenladder", config)
    test = dict(picked.test_metrics) if picked else None
    row = summarise("greenladder", picked, test, runs, report.total_cost, config, wall, data)
    own = report.verdicts.get(picked.run_id) if picked is not None else None
    # the climb decided at its own level (Bonferroni over its planned candidates: stricter than the row's)
    row["climb_verdict"] = own.to_dict() if own is not None else None
    row["report_json"] = str(out / "report.json")
    row["stop_reason"] = report.stop_reason
    row["baseline_validation"] = report.baseline.metrics.get(args.metric) if report.baseline else None
    row["baseline_test"] = report.baseline.test_metrics.get(args.metric) if report.baseline else None
    return row


def _train(
    config: Any,
    rung: Any,
    source: str,
    data: Any,
    run_dir: Path,
    key: Any,
    hp: dict[str, Any],
    reuse: RunReuse,
    method: str,
) -> Any:
    from advisor.models.ladder import candidate_for
    from advisor.training.train import train_run

    hp = {**hp, "batch_size": config.train.batch_size, "warmup_ratio": config.train.warmup_ratio}
    earlier = reuse.find(rung.name, hp, config, key)
    if earlier is not None:
        say(
            f"{key.run_id}: the same run as {earlier.details['reused_from']} (rung, settings, seed, data): not trained "
            f"again, its metered cost is charged here; validation {config.criteria.metric} "
            f"{earlier.metrics.get(config.criteria.metric, float('nan')):.3f}"
        )
        return earlier
    run = train_run(candidate_for(rung), source, data, config, run_dir, key, hp, progress=say)
    reuse.add(run, run_dir, method, config)
    return run


def _pick_and_test(method: str, runs: list[Any], run_dir: Path, data: Any, config: Any, wall0: float) -> dict[str, Any]:
    metric = config.criteria.metric
    ok = [r for r in runs if r.status == "ok" and r.artifact]
    total = sum((r.cost for r in runs), type(runs[0].cost)())
    picked, test_metrics = None, None
    if ok:
        picked = max(ok, key=lambda r: r.metrics.get(metric, float("-inf")))
        test_metrics, test_cost = test_eval(picked, run_dir, data, config)
        total = total + test_cost
        picked = dataclasses.replace(picked, test_metrics=test_metrics)
    # a reused run's wall time was spent in the method that trained it: it is added here
    wall = time.perf_counter() - wall0 + sum(r.cost.wall_s for r in runs if r.details.get("reused_from"))
    row = summarise(method, picked, test_metrics, runs, total, config, wall, data)
    row["reused_runs"] = [f"{r.run_id} = {r.details['reused_from']}" for r in runs if r.details.get("reused_from")]
    return row


def run_exhaustive(args: argparse.Namespace, folder: Path, work: Path, data: Any, reuse: RunReuse) -> dict[str, Any]:
    run_dir = work / "exhaustive"
    config = make_config(args, folder, run_dir)
    sources = rung_sources(config)
    started = time.perf_counter()
    runs = []
    for name, (rung, source) in sources.items():
        for lr in args.lr_list:
            for epochs in args.epoch_list:
                key = RunKey("trial", f"{name}-lr{lr:g}-e{epochs:g}", 1)
                runs.append(
                    _train(
                        config,
                        rung,
                        source,
                        data,
                        run_dir,
                        key,
                        {"learning_rate": lr, "epochs": epochs},
                        reuse,
                        "exhaustive",
                    )
                )
    return _pick_and_test("exhaustive grid", runs, run_dir, data, config, started)


def run_optuna(args: argparse.Namespace, folder: Path, work: Path, data: Any, reuse: RunReuse) -> dict[str, Any]:
    import optuna

    run_dir = work / "optuna"
    config = make_config(args, folder, run_dir)
    sources = rung_sources(config)
    trials = len(sources) * len(args.lr_list) * len(args.epoch_list)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=args.seed))
    e_lo, e_hi = int(min(args.epoch_list)), int(max(args.epoch_list))
    started = time.perf_counter()
    runs = []
    for i in range(trials):
        trial = study.ask()
        name = trial.suggest_categorical("rung", list(sources))
        lr = trial.suggest_float("learning_rate", min(args.lr_list), max(args.lr_list), log=True)
        epochs = float(trial.suggest_int("epochs", e_lo, e_hi))
        rung, source = sources[name]
        hp = {"learning_rate": lr, "epochs": epochs}
        run = _train(config, rung, source, data, run_dir, RunKey("trial", name, i), hp, reuse, "optuna")
        runs.append(run)
        value = run.metrics.get(args.metric) if run.status == "ok" else None
        study.tell(trial, value, state=None if value is not None else optuna.trial.TrialState.FAIL)
    return _pick_and_test(f"optuna TPE ({trials} trials)", runs, run_dir, data, config, started)


# ----------------------------------------------------------------------------------------------- FLAML


def _flaml_flops(log_file: Path, sources: dict[str, tuple[Any, str]], data: Any, max_length: int) -> tuple[float, int]:
    """Estimated FLOPs of FLAML's trials from its log: (total, trials).

    Per trial: 3 x forward FLOPs over the real (unpadded) training tokens x epochs (Kaplan et al.
    2020's 6N per token, via ``advisor.metering.flops.forward_coefficients``) + one forward pass over the
    validation split per epoch. Padding is not counted, so this is a lower bound.
    """
    from transformers import AutoConfig, AutoTokenizer

    from advisor.data.task import column
    from advisor.metering.flops import forward_coefficients

    any_source = next(iter(sources.values()))[1]
    tok = AutoTokenizer.from_pretrained(any_source)

    def sums(texts: list[str]) -> tuple[int, int, int]:
        lengths = [len(ids) for ids in tok(texts, truncation=True, max_length=max_length)["input_ids"]]
        return sum(lengths), sum(n * n for n in lengths), len(lengths)

    train_s = sums(column(data.train, "text"))
    val_s = sums(column(data.validation, "text"))
    by_path = {src: AutoConfig.from_pretrained(src) for _, src in sources.values()}
    total, trials = 0.0, 0
    if not log_file.is_file():
        return 0.0, 0
    for line in log_file.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        cfg = rec.get("config") or {}
        if "model_path" not in cfg:
            continue
        a, b, c = forward_coefficients(by_path[cfg["model_path"]], len(data.label_names))
        share = min(1.0, float(rec.get("sample_size") or data.train.num_rows) / data.train.num_rows)
        epochs = float(cfg.get("num_train_epochs", 1))
        train_fwd = a * train_s[0] + b * train_s[1] + c * train_s[2]
        val_fwd = a * val_s[0] + b * val_s[1] + c * val_s[2]
        total += epochs * (3 * share * train_fwd + val_fwd)
        trials += 1
    return total, trials


def run_flaml(
    args: argparse.Namespace, folder: Path, work: Path, data: Any, budget_s: float, label: str
) -> dict[str, Any]:
    from advisor.data.task import column
    from advisor.metering.cost import Meter
    from advisor.verdicts.criteria import compute_metrics

    config = make_config(args, folder, work / "flaml")
    sources = rung_sources(config)
    row: dict[str, Any] = {"method": label, "budget_s": budget_s}
    try:
        import pandas as pd
        from flaml import AutoML, tune
    except ImportError as exc:
        row["error"] = f"FLAML not installed ({exc}); see BENCHMARKS.md for the install line"
        return row
    names = list(data.label_names)
    path_to_rung = {src: name for name, (_, src) in sources.items()}
    out_dir = Path(tempfile.mkdtemp(prefix="flaml-", dir=work))
    log_file = out_dir / "flaml.log"
    x_train = pd.DataFrame({"text": column(data.train, "text")})
    y_train = pd.Series([names[i] for i in column(data.train, "label")])
    x_val = pd.DataFrame({"text": column(data.validation, "text")})
    y_val = pd.Series([names[i] for i in column(data.validation, "label")])
    metric = {"accuracy": "accuracy", "macro_f1": "macro_f1", "f1": "f1"}.get(args.metric, args.metric)
    e_lo, e_hi = int(min(args.epoch_list)), int(max(args.epoch_list))
    custom_hp = {
        "transformer": {
            # the same rungs and ranges as the other methods
            "model_path": {"domain": tune.choice(list(path_to_rung))},
            "learning_rate": {"domain": tune.loguniform(min(args.lr_list), max(args.lr_list))},
            "num_train_epochs": {"domain": tune.choice(list(range(e_lo, e_hi + 1))), "low_cost_init_value": e_lo},
            "per_device_train_batch_size": {"domain": config.train.batch_size},
        }
    }
    automl = AutoML()
    started = time.perf_counter()
    try:
        with Meter(config.metering, phase=label) as meter:
            automl.fit(
                X_train=x_train,
                y_train=y_train,
                X_val=x_val,
                y_val=y_val,
                task="seq-classification",
                metric=metric,
                estimator_list=["transformer"],
                time_budget=max(1, int(round(budget_s))),
                gpu_per_trial=0,
                n_concurrent_trials=1,
                fit_kwargs_by_estimator={
                    "transformer": {
                        "output_dir": str(out_dir / "trainer"),
                        "max_seq_length": args.max_length,
                        "per_device_eval_batch_size": 64,
                        "use_cpu": True,
                        "save_only_model": True,
                    }
                },
                custom_hp=custom_hp,
                log_type="all",
                log_file_name=str(log_file),
                seed=args.seed,
                verbose=0,
            )
            best = automl.best_config or {}
            preds = list(automl.predict(pd.DataFrame({"text": column(data.test, "text")})))
            val_preds = list(automl.predict(x_val))
        wall = time.perf_counter() - started
    except Exception as exc:  # the table says FLAML could not run, and why
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        shutil.rmtree(out_dir, ignore_errors=True)
        return row
    index = {n: i for i, n in enumerate(names)}
    test_metrics = compute_metrics(column(data.test, "label"), [index[str(p)] for p in preds], data.label_names)
    flops, trials = _flaml_flops(log_file, sources, data, args.max_length)
    picked_path = best.get("model_path")
    one = 0.0
    if picked_path in path_to_rung:
        one, _ = _flaml_flops_for_one(picked_path, best, sources, data, args.max_length)
    hp = {k: best.get(k) for k in ("learning_rate", "num_train_epochs", "per_device_train_batch_size")}
    picked = _flaml_pick(str(picked_path), path_to_rung, hp, [index[str(p)] for p in val_preds], data)
    verdict = judge_run(picked, config.criteria, column(data.validation, "label"), len(names))
    row.update(
        {
            "picked": picked.candidate.name,
            "picked_hparams": hp,
            "validation_metric": picked.metrics.get(args.metric),
            "test_metric": test_metrics.get(args.metric),
            "judged_at": config.criteria.confidence,
            "verdict": verdict.to_dict(),
            "meets_criteria": verdict.passed,
            "pick": evidence(picked, verdict),
            "closest": None
            if verdict.passed
            else evidence(picked, verdict),  # FLAML's other trials left no predictions
            "rungs_passing_on_validation": [picked.candidate.name] if verdict.passed else [],
            "trainings": trials,
            "flops": flops,
            "flops_provenance": "estimated from FLAML's trial log (real tokens only: a lower bound)",
            "kwh": meter.cost.energy_kwh,
            "energy_provenance": meter.cost.provenance.get("energy", ""),
            "wall_s": wall,
            "overhead_flops": flops / one if one > 0 else None,
            "overhead_kwh": None,
            "best_loss": automl.best_loss,
        }
    )
    shutil.rmtree(out_dir / "trainer", ignore_errors=True)  # its checkpoints; the trial log stays in the work folder
    return row


def _flaml_pick(
    path: str, path_to_rung: dict[str, str], hp: dict[str, Any], val_predictions: list[int], data: Any
) -> Any:
    """FLAML's best model as a run record (metrics and predictions on the validation rows), judged like any other."""
    from advisor.data.task import column
    from advisor.verdicts.criteria import compute_metrics

    metrics = compute_metrics(column(data.validation, "label"), val_predictions, data.label_names)
    rung = path_to_rung.get(path, path)
    return predictions_run(RunKey("trial", "flaml-best", 1), rung, path, hp, metrics, val_predictions)


def _flaml_flops_for_one(
    path: str, cfg: dict[str, Any], sources: dict[str, tuple[Any, str]], data: Any, max_length: int
) -> tuple[float, int]:
    """Estimated FLOPs of one training with FLAML's best config (same formula as its trials)."""
    tmp = Path(tempfile.mkdtemp())
    try:
        (tmp / "one.log").write_text(json.dumps({"config": {**cfg, "model_path": path}}) + "\n", encoding="utf-8")
        return _flaml_flops(tmp / "one.log", sources, data, max_length)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


#: options that change the results but not the data or the methods: set away from their defaults, they name the file
NAMED_SETTINGS = (
    "target",
    "rungs",
    "eval_rows",
    "max_length",
    "lrs",
    "epochs",
    "gl_epochs",
    "trials_per_rung",
    "flaml_multiples",
    "seed",
    "no_reuse",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args, defaults = parser.parse_args(argv), parser.parse_args([])
    args.changed = {k: getattr(args, k) for k in NAMED_SETTINGS if getattr(args, k) != getattr(defaults, k)}
    return resolve_args(args)


def split_name(args: argparse.Namespace) -> str:
    """The name of the temporary folder holding the split every method reads (see ``fixed_split``)."""
    return f"select-{args.slug}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    writer, title = open_results("select_models.py", argv, args, result_name, "method's row")
    started = time.perf_counter()
    with work_folder(args.work, f"select-{args.slug}-") as work:
        kept = "kept" if args.work is not None else "temporary: removed at the end; --work DIR keeps it"
        say(f"working in {work} ({kept})")
        data, folder = split_for(args, split_name(args), root=work)
        args.data_sha256 = data_digest(data)
        rows = run_methods(args, folder, work, data, writer, title)
    elapsed = time.perf_counter() - started
    notes = [
        f"Data: `{args.data}` (SHA-256 of the split as read {args.data_sha256[:12]}), train {data.train.num_rows} / "
        f"validation {data.validation.num_rows} / test {data.test.num_rows} rows (stratified, seed {args.seed}), max "
        f"length {args.max_length} tokens; ladder {', '.join(args.rung_list)}; criteria: validation {args.metric} ≥ "
        f"{args.floor:g}.",
        f"Exhaustive grid: learning rates {args.lr_list} × epochs {args.epoch_list} per rung; optuna gets as many trials; "
        f"greenladder: its default first trial (lr 1e-4, {args.gl_epochs:g} epochs), then the warm start and the "
        f"lr probe, then TPE, {args.trials_per_rung} trials per rung at most.",
        *verdict_notes(rows, args),
        *trial_log(rows, args.metric),
        *reuse_notes(rows, args.no_reuse),
        *(
            [
                f"Read back from the earlier run of these settings (`--resume`; its wall times and energy are that run's): {', '.join(r['method'] for r in rows if r.get('resumed'))}."
            ]
            if any(r.get("resumed") for r in rows)
            else []
        ),
        "greenladder, exhaustive and optuna train through `advisor.training.train.train_run` (dynamic padding, length-bucketed "
        "batches, health rules; each saved model is timed for latency, as advise does); FLOPs "
        "are analytic from the tokens each forward pass saw, the test evaluation of the pick included.",
        "FLAML trains with its own Trainer loop (static padding to the maximum length), so its cost per trial differs; "
        "its FLOPs are estimated from its trial log, energy and time are metered around fit + predict.",
        "Selection overhead = total of the method ÷ the cost of the one training run of the picked model "
        "(that run's training, validation and latency passes).",
        "Energy: codecarbon, CPU power estimated from TDP and load (no RAPL counters here), RAM a constant.",
        f"Whole benchmark: {elapsed:.0f} s.",
    ]
    raw = {"args": {k: v for k, v in vars(args).items()}, "rows": rows, "elapsed_s": elapsed}
    writer.finish(title, tables(rows, args), notes, raw)
    return 0


def run_methods(
    args: argparse.Namespace, folder: Path, work: Path, data: Any, writer: Any, title: str
) -> list[dict[str, Any]]:
    """Every method asked for, in order; each row recorded and the tables so far shown as it finishes."""
    methods = [m.strip() for m in args.methods.split(",")]
    rows: list[dict[str, Any]] = []
    reuse = RunReuse(enabled=not args.no_reuse, data_sha256=args.data_sha256)
    back = resumed(args, writer)

    def done(row: dict[str, Any]) -> None:
        rows.append(row)
        writer.record(row["method"], row)
        writer.show(f"{title}: after {row['method']}", tables(rows, args))

    def read_back(label: str) -> bool:
        row = back.get(label)
        if row is not None:
            say(f"== {label}: read back from the earlier run (--resume)")
            done({**row, "resumed": True})
        return row is not None

    if "greenladder" in methods and not read_back("greenladder"):
        say("== greenladder advise")
        row = run_greenladder(args, folder, work, data, reuse)
        report = Path(row.pop("report_json"))
        if report.is_file():  # the report a reader checks greenladder's row against, kept beside the results
            kept = writer.attach("greenladder-report.json", report.read_text(encoding="utf-8"))
            row["report_file"] = kept.name if kept is not None else None
        done({**row, "data_sha256": args.data_sha256})
    for method, heading, run in (
        ("exhaustive", "exhaustive grid", run_exhaustive),
        ("optuna", "optuna TPE", run_optuna),
    ):
        if method in methods and not any(read_back(label) for label in back if label.startswith(method)):
            say(f"== {heading}")
            done({**run(args, folder, work, data, reuse), "data_sha256": args.data_sha256})
    if "flaml" in methods:
        gl_wall = next((r["wall_s"] for r in rows if r["method"] == "greenladder"), None)
        if gl_wall is None:
            done({"method": "FLAML", "error": "needs greenladder's wall time for its budget"})
        else:
            for mult in (float(x) for x in args.flaml_multiples.split(",")):
                label = f"FLAML ({mult:g}x greenladder's time)"
                if not read_back(label):
                    say(f"== {label}: budget {mult * gl_wall:.0f} s")
                    done(
                        {**run_flaml(args, folder, work, data, mult * gl_wall, label), "data_sha256": args.data_sha256}
                    )
    return rows


def resumed(args: argparse.Namespace, writer: Any) -> dict[str, dict[str, Any]]:
    """With ``--resume``: the rows the latest earlier run of the same result name finished, by method label.

    The same result name means the same data slug and settings (``result_name``); a row that records
    the SHA-256 of its split must match this split's, else the earlier run measured other data.

    Raises:
        BenchError: an earlier row was measured on another split.
    """
    if not args.resume:
        return {}
    rows = [r for r in earlier_rows(writer.jsonl, skip=writer.run_started) if "error" not in r]
    for row in rows:
        if row.get("data_sha256", args.data_sha256) != args.data_sha256:
            raise BenchError(
                f"--resume: {writer.jsonl} holds {row['method']!r} measured on another split "
                f"(SHA-256 {row['data_sha256'][:12]}, this one {args.data_sha256[:12]}); run without --resume."
            )
    say(
        f"--resume: {len(rows)} finished method(s) in {writer.jsonl}"
        + (f": {', '.join(r['method'] for r in rows)}" if rows else "")
    )
    return {row["method"]: row for row in rows}


def result_name(args: argparse.Namespace) -> tuple[str, str]:
    """File name and title of the results: a run off the default size or methods gets its own file.

    So ``--train-rows 500 --methods greenladder`` writes ``select_models-<data>-500rows-greenladder``
    and leaves the default run's tables alone; ``<data>`` is the data's slug (``data_slug``).
    """
    name, title = f"select_models-{args.slug}", f"Model selection on {args.slug}"
    extra: list[str] = []
    if args.quick:
        name, title = name + "-quick", title + " (quick)"
    elif args.train_rows != DEFAULT_TRAIN_ROWS:
        name, extra = name + f"-{args.train_rows}rows", [*extra, f"{args.train_rows} training rows"]
    if args.methods != DEFAULT_METHODS:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        name, extra = name + "-" + safe_name("-".join(methods)), [*extra, "methods: " + ", ".join(methods)]
    changed = getattr(args, "changed", {})
    if changed:  # another floor, seed or grid is another result: its own file, named by a hash of the settings
        digest = hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:6]
        shown = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in sorted(changed.items()))
        name, extra = name + f"-set{digest}", [*extra, shown]
    return name, title + (f" ({'; '.join(extra)})" if extra else "")


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
