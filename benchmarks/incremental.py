"""Incremental training: continue an earlier model on expanded data, or train the rung again from its checkpoint?

For each dataset and split seed: one fixed split (``common.fixed_split``), then

1. earlier: ``advise`` on half of the training rows (stratified), one rung, one trial;
2. continued: ``advise --from earlier --compare-scratch`` on all the training rows, same validation
   and test rows: the earlier model continued with the continuation schedule
   (``incremental.lr_factor``, ``incremental.epochs``), and the same rung trained from its
   pre-trained checkpoint with the earlier winning settings (measured, not forecast);
3. replay: the same continuation with ``incremental.replay_fraction`` below 1 (emphasis on the new
   rows: every new row, part of the earlier ones), to see whether it should be the default.

Compute is what each run metered (analytic FLOPs, wall time); metrics on validation and test come
with paired-bootstrap intervals on the same rows (``advisor.incremental.comparison.paired_difference``). The
earlier run's baseline is scored 0 so that the transformer is recommended: what is measured here
is continuing a transformer (a baseline recommendation is simply refitted, which costs seconds).

    python -m benchmarks.incremental --quick
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_TARGETS, fixed_split, markdown_table, say, set_threads, write_results

DATASETS = ("bbc-news", "spamassassin")


def _half(folder: Path, seed: int) -> Path:
    """The same saved split with half of the training rows (stratified), validation and test unchanged."""
    import datasets

    from benchmarks.common import _stratified_head

    dd = datasets.load_from_disk(str(folder))
    half = _stratified_head(dd["train"], dd["train"].num_rows // 2, seed)
    out = folder.with_name(folder.name + "-half")
    datasets.DatasetDict({"train": half, "validation": dd["validation"], "test": dd["test"]}).save_to_disk(str(out))
    return out


def _test_predictions(run_dir: Path, run_id: str, data: Any, max_length: int) -> list[int]:
    from advisor.data.task import column
    from advisor.models.loading import load_for_classification
    from advisor.training.inference import predict_labels
    from advisor.training.train import quiet_libraries

    saved = run_dir / f"test-predictions-{run_id}.json"  # kept for a rerun: the checkpoint is deleted
    if saved.is_file():
        return [int(p) for p in json.loads(saved.read_text())]
    with quiet_libraries():
        model, tok = load_for_classification(str(run_dir / "runs" / run_id / "model"), data.label_names)
    preds = [int(p) for p in predict_labels(model, tok, column(data.test, "text"), max_length)]
    saved.write_text(json.dumps(preds))
    return preds


def one(source: str, seed: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import advisor.climb.executor as climb_mod
    from advisor.advise import advise
    from advisor.config.settings import build_config
    from advisor.data.task import column
    from advisor.incremental.comparison import paired_difference
    from advisor.types import Cost

    data, folder = fixed_split(
        source, f"incr-{source}-{seed}", train_rows=args.train_rows, eval_rows=args.eval_rows, seed=seed, progress=say
    )
    half = _half(folder, seed)
    metric, floor = DEFAULT_TARGETS[source]
    common = [
        "metering.codecarbon=false",
        f"ladder.rungs=[{args.rung}]",
        "tuning.trials_per_rung=1",
        f"train.max_length={args.max_length}",
        f"train.seed={seed}",
        f"criteria.metric={metric}",
        f"criteria.floor={floor}",
        "output.keep_checkpoints=true",
        *args.overrides,
    ]
    real_fit = climb_mod.fit_baseline

    def weak(task: Any, *a: Any, **k: Any) -> Any:
        # wrong on every validation row, with no cross-validation to judge it by: it fails any floor
        run = real_fit(task, *a, **k)
        n = len(task.label_names)
        wrong = tuple((int(y) + 1) % n for y in column(task.validation, "label"))
        return dataclasses.replace(run, metrics={m: 0.0 for m in run.metrics}, val_predictions=wrong, cv=None)

    climb_mod.fit_baseline = weak  # the earlier climb must recommend the transformer (see the docstring)
    try:
        say(f"{source} seed {seed}: earlier run on {len(data.train) // 2} training rows")
        earlier_dir = work / f"{source}-{seed}-earlier"
        # a floor any trained model clears: the earlier run must recommend the transformer
        overrides = [*common, f"data.source={half}", f"output.out={earlier_dir}", "criteria.floor=0.01"]
        advise(build_config(overrides=overrides), progress=say)
    finally:
        climb_mod.fit_baseline = real_fit
    out: dict[str, Any] = {"dataset": source, "seed": seed, "metric": metric, "train_rows": len(data.train)}
    runs: dict[str, dict[str, Any]] = {}
    for label, extra in (
        ("continued", ["incremental.compare_scratch=true"]),
        ("replay", [f"incremental.replay_fraction={args.replay}"]),
    ):
        run_dir = work / f"{source}-{seed}-{label}"
        say(f"{source} seed {seed}: {label} on all {len(data.train)} training rows")
        started = time.time()
        config = build_config(overrides=[*common, f"data.source={folder}", f"output.out={run_dir}", *extra])
        report = advise(config, from_run=earlier_dir, progress=say)
        inc = report.details["incremental"]
        for run in report.runs:
            if run.run_id.endswith(("-c1", "-scratch")):
                key = "scratch" if run.run_id.endswith("-scratch") else label
                runs[key] = {
                    "run": run,
                    # continuing's cost includes judging the earlier model on the new validation split
                    "cost": run.cost if key == "scratch" else Cost.from_dict(inc["incremental_cost"]),
                    "test_pred": _test_predictions(run_dir, run.run_id, data, args.max_length),
                    "dir": run_dir,
                }
        out[f"{label}_wall_s"] = time.time() - started
        out[f"{label}_details"] = inc
    y_val, y_test = column(data.validation, "label"), column(data.test, "label")
    k = len(data.label_names)
    rows = []
    for key in ("continued", "replay", "scratch"):
        if key not in runs:
            continue
        run, cost = runs[key]["run"], runs[key]["cost"]
        entry: dict[str, Any] = {
            "run_id": run.run_id,
            "status": run.status,
            "train_flops": cost.train_flops,
            "flops": cost.flops,
            "wall_s": cost.wall_s,
            "steps": run.details.get("steps"),
            "train_examples": run.train_examples,
            "hyperparameters": dict(run.hyperparameters),
        }
        if key != "scratch" and "scratch" in runs:
            s = runs["scratch"]
            entry["val_vs_scratch"] = paired_difference(
                y_val, run.val_predictions, s["run"].val_predictions, metric, k, seed=seed
            )
            entry["test_vs_scratch"] = paired_difference(
                y_test, runs[key]["test_pred"], s["test_pred"], metric, k, seed=seed
            )
            entry["flops_vs_scratch"] = cost.flops / s["cost"].flops
            entry["train_flops_vs_scratch"] = cost.train_flops / s["cost"].train_flops
        entry["val"] = paired_difference(y_val, run.val_predictions, run.val_predictions, metric, k)["a"]
        entry["test"] = paired_difference(y_test, runs[key]["test_pred"], runs[key]["test_pred"], metric, k)["a"]
        rows.append((key, entry))
        out[key] = entry
    for key in ("continued", "replay", "scratch"):
        if key in runs:
            shutil.rmtree(runs[key]["dir"] / "runs", ignore_errors=True)  # checkpoints: hundreds of MB each
    return out


def _interval(d: dict[str, Any] | None) -> str:
    if not d or d.get("difference") is None:
        return "—"
    return f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="160 training rows, 100 validation and 100 test rows")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--rung", default="minilm-l6")
    p.add_argument("--train-rows", type=int, default=None)
    p.add_argument("--eval-rows", type=int, default=None)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--replay", type=float, default=0.5, help="replay_fraction of the emphasis variant")
    p.add_argument("--set", action="append", default=[], dest="overrides", help="config override for every run")
    p.add_argument("--threads", type=int, default=2, help="torch threads (1 on a crowded machine)")
    args = p.parse_args(argv)
    if args.quick:
        args.train_rows = args.train_rows or 160
        args.eval_rows = args.eval_rows or 100
    set_threads(args.threads)
    # a fixed folder: a rerun after a crash or a kill reads finished runs back from each run's ledger
    work = (
        Path(tempfile.gettempdir())
        / "greenladder-bench"
        / f"incremental-{args.train_rows}-{args.eval_rows}-{args.rung}"
    )
    results = [one(source, seed, args, work) for source in args.datasets for seed in args.seeds]
    shutil.rmtree(work, ignore_errors=True)
    headers = [
        "dataset",
        "seed",
        "run",
        "train rows",
        "steps",
        "train PFLOPs",
        "x scratch FLOPs",
        "wall s",
        "val",
        "val − scratch [95% CI]",
        "test",
        "test − scratch [95% CI]",
    ]
    table = []
    for r in results:
        for key in ("continued", "replay", "scratch"):
            e = r.get(key)
            if e is None:
                continue
            table.append(
                [
                    r["dataset"],
                    r["seed"],
                    key if key != "replay" else f"replay {args.replay:g}",
                    e["train_examples"],
                    e["steps"],
                    e["train_flops"] / 1e15,
                    e.get("flops_vs_scratch"),
                    e["wall_s"],
                    e["val"],
                    _interval(e.get("val_vs_scratch")),
                    e["test"],
                    _interval(e.get("test_vs_scratch")),
                ]
            )
    n_val = results[0]["continued"]["val_vs_scratch"]["n"] if results and "continued" in results[0] else "?"
    n_test = results[0]["continued"]["test_vs_scratch"]["n"] if results and "continued" in results[0] else "?"
    notes = [
        f"Rung {args.rung}, max_length {args.max_length}, one trial per rung, overrides {args.overrides or 'none'}; "
        "train rows as shown, "
        f"validation n={n_val}, test n={n_test} per seed (the same rows for every run of a seed).",
        "continued: the earlier model (trained on half the rows) continued on all rows with the continuation schedule; "
        f"replay {args.replay:g}: the same with every new row and {args.replay:.0%} of the earlier rows; "
        "scratch: the rung from its pre-trained checkpoint on all rows with the earlier winning settings.",
        "x scratch FLOPs: all FLOPs (training, evaluation, latency passes) of the run over the scratch run's; the "
        "earlier run's own cost is not counted (it was spent before the data grew).",
        "Differences are paired bootstraps (2000 resamples) on the same rows; an interval holding 0 means no "
        "difference was detected at this n, not that there is none.",
        "The earlier run's TF-IDF baseline was scored 0 and its floor set to 0.01, so that the transformer was "
        "recommended; the continuation runs use the dataset's usual floor (benchmarks/common.py).",
    ]
    name = "incremental" + ("-quick" if args.quick else "")
    command = "python -m benchmarks.incremental " + " ".join(sys.argv[1:] if argv is None else argv)
    write_results(
        name, "Incremental training against from-scratch", command, [markdown_table(headers, table)], notes, results
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
