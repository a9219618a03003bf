"""How often is a recommendation's test metric really above the floor? The point rule against the interval rule.

For each dataset and split seed, the baseline and each rung are trained once (one trial each, the
default settings), and every run is scored on validation and test. Then the climb's own decision
function (``advisor.policy.decide``) is replayed on those runs for several floors near the rungs'
scores, under (a) the point-estimate rule greenladder used before (a run passes when its
validation metric reaches the floor) and (b) the interval rule (its lower confidence bound must
clear the floor, Bonferroni-corrected over the candidates). Both rules judge the same trained
runs, so (a) costs no extra training. For each rule the table gives the share of recommendations
whose test metric meets the floor (with its Wilson interval), the share of climbs that end with no
recommendation, and the compute each spent.

Usage::

    python benchmarks/verdict_reliability.py                    # 2 datasets x 5 seeds
    python benchmarks/verdict_reliability.py --quick            # 1 dataset x 2 seeds, tiny sizes

Finished runs are cached in the work folder (one JSON line each), so a rerun resumes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS, fmt, markdown_table, say, set_threads  # noqa: E402

RUNGS = ("minilm-l3", "minilm-l6")


def train_all(
    name: str, seed: int, args: argparse.Namespace, work: Path, rungs: tuple[str, ...] = RUNGS
) -> list[dict[str, Any]]:
    """Baseline and every rung on one split: validation and test predictions, cost."""
    from advisor.baseline import fit_baseline
    from advisor.config import build_config
    from advisor.data import column, load_task_data
    from advisor.inference import predict_labels
    from advisor.loading import load_for_classification
    from advisor.models import candidate_for, load_ladder, materialise
    from advisor.train import train_run

    out = work / f"{name}-s{seed}"
    config = build_config(
        overrides=[
            f"data.source={name}",
            f"data.split_seed={seed}",
            f"data.validation_fraction={args.validation_fraction}",
            f"data.test_fraction={args.test_fraction}",
            f"train.max_length={args.max_length}",
            f"train.epochs={args.epochs}",
            f"train.learning_rate={args.lr}",
            "train.evals_per_epoch=1",
            f"output.out={out}",
        ]
    )
    data = load_task_data(config.data)
    if args.train_rows and len(data.train) > args.train_rows:
        import dataclasses

        data = dataclasses.replace(data, train=data.train.shuffle(seed=seed).select(range(args.train_rows)))
    val_y, test_y = column(data.validation, "label"), column(data.test, "label")
    rows = []
    base = fit_baseline(data, config, out)
    rows.append(_row(name, seed, base, base.val_predictions, base.test_predictions, val_y, test_y, data))
    wanted, rungs = rungs, {r.name: r for r in load_ladder("offline")}
    for rung_name in wanted:
        rung = rungs[rung_name]
        source = str(materialise(rung, None))
        run = train_run(candidate_for(rung), source, data, config, out, f"{rung_name}-t1")
        test_pred: list[int] = []
        if run.artifact:
            model, tok = load_for_classification(str(out / run.artifact), data.label_names)
            test_pred = [int(x) for x in predict_labels(model, tok, column(data.test, "text"), args.max_length)]
        rows.append(_row(name, seed, run, run.val_predictions, test_pred, val_y, test_y, data))
        say(f"{name} seed {seed} {rung_name}: validation {run.metrics.get('accuracy', float('nan')):.3f}")
    return rows


def _row(name: str, seed: int, run: Any, val_pred: Any, test_pred: Any, val_y: Any, test_y: Any, data: Any) -> dict:
    return {
        "dataset": name,
        "seed": seed,
        "run": run.to_dict(),
        "val_labels": list(val_y),
        "test_labels": list(test_y),
        "test_predictions": list(test_pred),
        "label_names": list(data.label_names),
    }


def replay(rows: list[dict[str, Any]], floor: float, rule: str) -> dict[str, Any]:
    """The climb's decisions on these trained runs, at ``floor``, under ``rule``."""
    from advisor.config import build_config
    from advisor.policy import Evidence, FitBaseline, RungInfo, Stop, Train, decide
    from advisor.stats import metric_value
    from advisor.types import RunResult

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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="uncertainty,spamassassin")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--train-rows", type=int, default=600)
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
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "greenladder-bench" / "reliability")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.quick:
        args.datasets, args.seeds, args.train_rows, args.epochs = "uncertainty", 2, 200, 1.0
    set_threads(2)
    args.work.mkdir(parents=True, exist_ok=True)
    cache = args.work / "runs.jsonl"
    done = [json.loads(line) for line in cache.read_text().splitlines()] if cache.exists() else []
    names = args.datasets.split(",")
    if args.refit_baseline:
        for name, seed in sorted({(r["dataset"], r["seed"]) for r in done if r["dataset"] in names}):
            (base,) = train_all(name, seed, args, args.work, rungs=())
            done = [
                base if (r["dataset"], r["seed"], r["run"]["run_id"]) == (name, seed, "baseline") else r for r in done
            ]
        cache.write_text("".join(json.dumps(r) + "\n" for r in done))
    for name in names:
        for seed in range(args.seeds):
            if any(r["dataset"] == name and r["seed"] == seed for r in done):
                continue
            fresh = train_all(name, seed, args, args.work)
            with cache.open("a") as fh:
                for r in fresh:
                    fh.write(json.dumps(r) + "\n")
            done += fresh

    from advisor.stats import metric_value, wilson

    tables, raw = [], []
    for name in names:
        groups = {}
        for r in done:
            if r["dataset"] == name:
                groups.setdefault(r["seed"], []).append(r)
        # floors where decisions are hard: around each model's mean test accuracy
        means = {}
        for rows in groups.values():
            for r in rows:
                k = len(r["label_names"])
                preds = r["test_predictions"]
                if preds:
                    means.setdefault(r["run"]["run_id"], []).append(
                        metric_value("accuracy", r["test_labels"], preds, k)
                    )
        floors = sorted({round(statistics.fmean(v) + d, 3) for v in means.values() for d in (-0.03, -0.01, 0.01)})
        for rule in ("point", "interval"):
            outcomes = [replay(rows, f, rule) for rows in groups.values() for f in floors]
            recs = [o for o in outcomes if o["recommended"]]
            met = sum(bool(o["met"]) for o in recs)
            low, high = wilson(met, len(recs), 0.95) if recs else (0.0, 1.0)
            raw.append({"dataset": name, "rule": rule, "floors": floors, "outcomes": outcomes})
            tables.append(
                [
                    name,
                    rule,
                    len(outcomes),
                    len(recs),
                    f"{met / len(recs):.3f} [{low:.3f}, {high:.3f}]" if recs else "n/a",
                    f"{1 - len(recs) / len(outcomes):.3f}",
                    fmt(statistics.fmean(o["pflops"] for o in outcomes)),
                ]
            )
    headers = [
        "dataset",
        "rule",
        "climbs",
        "recommendations",
        "met on test [95% CI]",
        "no recommendation",
        "mean PFLOPs",
    ]
    table = markdown_table(headers, tables)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "verdict_reliability-quick.md" if args.quick else "verdict_reliability.md"
    (args.out / name).write_text(
        "# Verdict reliability: point estimate against interval\n\n"
        f"Command: `python benchmarks/verdict_reliability.py {' '.join(sys.argv[1:])}`\n\n"
        f"{table}\n\n"
        f"Settings: {vars(args)}\n\n```json\n{json.dumps(raw)[:200000]}\n```\n",
        encoding="utf-8",
    )
    say(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
