"""How often is a recommendation's test metric really above the floor? The point rule against the interval rule.

For each dataset and split seed, the baseline and each rung are trained once (one trial each, the
default settings), and every run is scored on validation and test. Then the climb's own decision
function (``advisor.climb.policy.decide``) is replayed on those runs for several floors near the rungs'
scores, under (a) the point-estimate rule greenladder used before (a run passes when its
validation metric reaches the floor) and (b) the interval rule (its lower confidence bound must
clear the floor, Bonferroni-corrected over the candidates). Both rules judge the same trained
runs, so (a) costs no extra training. For each rule the table gives the share of recommendations
whose test metric meets the floor (with its Wilson interval), the share of climbs that end with no
recommendation, and the compute each spent.

Usage::

    python benchmarks/verdict_reliability.py                    # 2 datasets x 5 seeds, 500 training rows
    python benchmarks/verdict_reliability.py --quick            # 1 dataset x 2 seeds, tiny sizes
    python benchmarks/verdict_reliability.py --data "my data/sentences.csv" --work /tmp/rel --threads 2

Finished runs are cached in ``--work`` (``runs.jsonl``, one JSON line each), so a rerun resumes.
Each cached run is keyed on the SHA-256 of the split it was trained and scored on, as read (texts and
labels: another file, other rows or another split seed never match) and on every setting that changes
it (rungs, epochs, learning rate, maximum length, evaluations). The run folders go under ``--work``
too; each model is deleted once its test predictions are cached. Results are named after the data:
``verdict_reliability`` for the default datasets, ``verdict_reliability-<data>`` otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

# this checkout's advisor when run as a script, and the scripts' common module however it is imported
sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from common import (  # noqa: E402
    add_run_options,
    cache_key,
    data_digest,
    data_slug,
    fmt,
    markdown_table,
    open_results,
    run_cli,
    say,
)

RUNGS = ("minilm-l3", "minilm-l6")
DEFAULT_DATASETS = "uncertainty,spamassassin"
#: options that change the results: away from their defaults they name the results file
NAMED_SETTINGS = ("seeds", "train_rows", "validation_fraction", "test_fraction", "max_length", "epochs", "lr")


def unit_config(name: str, seed: int, args: argparse.Namespace, out: Path | None = None) -> Any:
    """The configuration of one dataset and split seed (``out``: its run folder)."""
    from advisor.config.settings import build_config

    return build_config(
        extra={
            "data": {
                "source": name,
                "split_seed": seed,
                "validation_fraction": args.validation_fraction,
                "test_fraction": args.test_fraction,
            },
            "train": {
                "max_length": args.max_length,
                "epochs": args.epochs,
                "learning_rate": args.lr,
                "evals_per_epoch": 1,
            },
            "output": {"out": str(out) if out is not None else "greenladder-runs"},
        }
    )


def load_unit(name: str, seed: int, args: argparse.Namespace) -> tuple[Any, str]:
    """The split of one dataset and seed, training rows cut as asked, and its cache key (content + settings)."""
    from advisor.data.task import load_task_data
    from advisor.models.ladder import load_ladder

    config = unit_config(name, seed, args)
    data = load_task_data(config.data)
    if args.train_rows and len(data.train) > args.train_rows:
        data = dataclasses.replace(data, train=data.train.shuffle(seed=seed).select(range(args.train_rows)))
    ladder = {r.name: r.source for r in load_ladder("offline")}
    t = config.train
    settings = {
        "rungs": {r: ladder.get(r) for r in RUNGS},
        "max_length": t.max_length,
        "epochs": t.epochs,
        "learning_rate": t.learning_rate,
        "evals_per_epoch": t.evals_per_epoch,
        "eval_rows": t.eval_rows,
        "train_seed": t.seed,
        "batch_size": t.batch_size,
    }
    return data, cache_key(data_digest(data), settings)


def train_all(
    name: str, seed: int, args: argparse.Namespace, work: Path, rungs: tuple[str, ...] = RUNGS
) -> list[dict[str, Any]]:
    """Baseline and every rung on one split: validation and test predictions, cost; each row carries the cache key."""
    from advisor.data.task import column
    from advisor.models.ladder import candidate_for, load_ladder, materialise
    from advisor.models.loading import load_for_classification
    from advisor.runkey import RunKey
    from advisor.training.baseline import fit_baseline
    from advisor.training.inference import predict_labels
    from advisor.training.train import train_run

    data, key = load_unit(name, seed, args)
    slug = args.slugs[name]
    out = work / f"{slug}-s{seed}-{key[:8]}"
    config = unit_config(name, seed, args, out)
    val_y, test_y = column(data.validation, "label"), column(data.test, "label")
    rows = []
    base = fit_baseline(data, config, out)
    rows.append(_row(slug, seed, key, base, base.test_predictions, val_y, test_y, data))
    ladder = {r.name: r for r in load_ladder("offline")}
    for rung_name in rungs:
        rung = ladder[rung_name]
        source = str(materialise(rung, None))
        run = train_run(candidate_for(rung), source, data, config, out, RunKey("trial", rung_name, 1))
        test_pred: list[int] = []
        if run.artifact:
            model, tok = load_for_classification(str(out / run.artifact), data.label_names)
            test_pred = [int(x) for x in predict_labels(model, tok, column(data.test, "text"), args.max_length)]
            shutil.rmtree(out / run.artifact, ignore_errors=True)  # its predictions are cached; nothing reads it again
        rows.append(_row(slug, seed, key, run, test_pred, val_y, test_y, data))
        say(f"{slug} seed {seed} {rung_name}: validation {run.metrics.get('accuracy', float('nan')):.3f}")
    return rows


def _row(
    name: str, seed: int, key: str, run: Any, test_pred: Any, val_y: Any, test_y: Any, data: Any
) -> dict[str, Any]:
    return {
        "dataset": name,
        "seed": seed,
        "key": key,
        "run": run.to_dict(),
        "val_labels": list(val_y),
        "test_labels": list(test_y),
        "test_predictions": list(test_pred),
        "label_names": list(data.label_names),
    }


def replay(rows: list[dict[str, Any]], floor: float, rule: str) -> dict[str, Any]:
    """The climb's decisions on these trained runs, at ``floor``, under ``rule``."""
    from advisor.climb.policy import Evidence, FitBaseline, RungInfo, Stop, Train, decide
    from advisor.config.settings import build_config
    from advisor.types import RunResult
    from advisor.verdicts.stats import metric_value

    by_id = {r["run"]["run_id"]: r for r in rows}
    config = build_config(
        overrides=[f"criteria.floor={floor}", "tuning.trials_per_rung=1", "ladder.distil_on_ceiling=false"]
    )
    runs: list[RunResult] = []
    k = len(rows[0]["label_names"])
    ev = lambda: Evidence(tuple(RungInfo(n) for n in RUNGS), tuple(runs), tuple(rows[0]["val_labels"]), k)  # noqa: E731
    while True:
        action = decide(ev(), config, rule=rule)
        if isinstance(action, Stop):
            break
        assert isinstance(action, (FitBaseline, Train)), action
        runs.append(RunResult.from_dict(by_id[action.run_id]["run"]))
    flops = sum(r.cost.flops for r in runs)
    if action.recommendation is None:
        return {"recommended": None, "met": None, "pflops": flops / 1e15}
    row = by_id[action.recommendation]
    test = metric_value("accuracy", row["test_labels"], row["test_predictions"], k)
    return {"recommended": action.recommendation, "met": test >= floor, "test": test, "pflops": flops / 1e15}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data",
        "--datasets",
        dest="datasets",
        default=None,
        help=f"built-in names or files, comma-separated (default {DEFAULT_DATASETS}; quick: uncertainty)",
    )
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--train-rows", type=int, default=500)
    p.add_argument("--validation-fraction", type=float, default=0.25)
    p.add_argument("--test-fraction", type=float, default=0.3)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--lr", type=float, default=2e-4, help="learning rate of every transformer run")
    p.add_argument(
        "--refit-baseline",
        action="store_true",
        help="fit the baseline again for every cached seed (cheap) and keep the cached transformer runs",
    )
    p.add_argument("--quick", action="store_true", help="1 dataset x 2 seeds, 200 training rows, 1 epoch")
    default_work = Path(tempfile.gettempdir()) / "greenladder-bench" / "reliability"
    add_run_options(p, f"folder for the run cache (runs.jsonl) and the run folders, kept (default {default_work})")
    p.set_defaults(work=default_work)
    p.add_argument("--out", type=Path, default=None, help="folder for the results (default benchmarks/results/)")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args, defaults = parser.parse_args(argv), parser.parse_args([])
    args.changed = {k: getattr(args, k) for k in NAMED_SETTINGS if getattr(args, k) != getattr(defaults, k)}
    if args.quick:  # smaller defaults; a setting given on the command line stays
        for key, value in (("seeds", 2), ("train_rows", 200), ("epochs", 1.0)):
            if key not in args.changed:
                setattr(args, key, value)
    args.named_data = args.datasets is not None and args.datasets != DEFAULT_DATASETS
    if args.datasets is None:
        args.datasets = "uncertainty" if args.quick else DEFAULT_DATASETS
    args.names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    args.slugs = {n: data_slug(n) for n in args.names}  # a missing file fails here, before anything is written
    return args


def result_name(args: argparse.Namespace) -> tuple[str, str]:
    """``verdict_reliability`` for the default datasets and settings; the data's slugs and a settings hash otherwise."""
    name, title = "verdict_reliability", "Verdict reliability: point estimate against interval"
    data = "-".join(args.slugs[n] for n in args.names)
    if args.quick:
        name, title = f"{name}-{data}-quick", f"{title} on {data} (quick)"
    elif args.named_data:
        name, title = f"{name}-{data}", f"{title} on {data}"
    if args.changed:
        digest = hashlib.sha256(json.dumps(args.changed, sort_keys=True).encode()).hexdigest()[:6]
        shown = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in sorted(args.changed.items()))
        name, title = f"{name}-set{digest}", f"{title} ({shown})"
    return name, title


def read_cache(cache: Path) -> list[dict[str, Any]]:
    """The cached rows that carry a key (rows written before runs were keyed on content are never reused)."""
    if not cache.exists():
        return []
    rows = [json.loads(line) for line in cache.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r.get("key")]


def runs_for(args: argparse.Namespace, work: Path) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """dataset slug -> seed -> the trained rows of that split: from the cache when its key matches, else trained now."""
    cache = work / "runs.jsonl"
    done = read_cache(cache)
    out: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for name in args.names:
        for seed in range(args.seeds):
            _, key = load_unit(name, seed, args)
            rows = [r for r in done if r["key"] == key]
            if rows and args.refit_baseline:
                (base,) = train_all(name, seed, args, work, rungs=())
                rows = [base if r["run"]["run_id"] == "baseline" else r for r in rows]
                done = [r for r in done if r["key"] != key] + rows
                cache.write_text("".join(json.dumps(r) + "\n" for r in done), encoding="utf-8")
            if rows:
                say(f"{args.slugs[name]} seed {seed}: {len(rows)} runs read back from {cache} (same data and settings)")
            else:
                rows = train_all(name, seed, args, work)
                with cache.open("a", encoding="utf-8") as fh:
                    fh.writelines(json.dumps(r) + "\n" for r in rows)
                done += rows
            out.setdefault(args.slugs[name], {})[seed] = rows
    return out


def summary_rows(slug: str, groups: dict[int, list[dict[str, Any]]]) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    """One table row per rule for one dataset, and the raw outcomes behind them."""
    from advisor.verdicts.stats import metric_value, wilson

    # floors where decisions are hard: around each model's mean test accuracy
    means: dict[str, list[float]] = {}
    for rows in groups.values():
        for r in rows:
            if r["test_predictions"]:
                k = len(r["label_names"])
                score = metric_value("accuracy", r["test_labels"], r["test_predictions"], k)
                means.setdefault(r["run"]["run_id"], []).append(score)
    floors = sorted({round(statistics.fmean(v) + d, 3) for v in means.values() for d in (-0.03, -0.01, 0.01)})
    table, raw = [], []
    for rule in ("point", "interval"):
        outcomes = [replay(rows, f, rule) for rows in groups.values() for f in floors]
        recs = [o for o in outcomes if o["recommended"]]
        met = sum(bool(o["met"]) for o in recs)
        low, high = wilson(met, len(recs), 0.95) if recs else (0.0, 1.0)
        raw.append({"dataset": slug, "rule": rule, "floors": floors, "outcomes": outcomes})
        table.append(
            [
                slug,
                rule,
                len(outcomes),
                len(recs),
                f"{met / len(recs):.3f} [{low:.3f}, {high:.3f}]" if recs else "n/a (no recommendation)",
                f"{1 - len(recs) / len(outcomes):.3f}",
                fmt(statistics.fmean(o["pflops"] for o in outcomes)),
            ]
        )
    return table, raw


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    writer, title = open_results("verdict_reliability.py", argv, args, result_name, "dataset's outcomes")
    work = args.work.expanduser()
    work.mkdir(parents=True, exist_ok=True)
    say(f"run cache and run folders in {work}")
    tables, raw = [], []
    for slug, groups in runs_for(args, work).items():
        rows, outcomes = summary_rows(slug, groups)
        writer.record(slug, outcomes)
        tables += rows
        raw += outcomes
    headers = [
        "dataset",
        "rule",
        "climbs",
        "recommendations",
        "met on test [95% CI]",
        "no recommendation",
        "mean PFLOPs",
    ]
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k not in ("changed",)}
    notes = [
        f"Settings: {json.dumps(settings, default=str)}.",
        "Each split's runs are cached under the SHA-256 of the split as read and of the training settings.",
    ]
    writer.finish(title, [markdown_table(headers, tables)], notes, raw)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
