"""Frugal tuning against optuna's random sampler without pruning, at the same trial budget.

Runs ``advise`` twice on the same data, ladder, criteria and seed: once as shipped (default
trial first, warm start from the rung below, TPE, paired pruning) and once with
``tuning.sampler=random``, ``tuning.pruning=false`` and neither the default nor the warm start
queued (plain optuna random search). Both stop at the first rung that meets the criteria. The
ladder is the default one, MiniLM-L3 then MiniLM-L6 (mpnet-base is optional and used only when
named). Prints what each spent to reach its
recommendation. FLOPs are analytic (the same formula for both), so the comparison holds on a
busy machine too; wall times are only comparable on a quiet one.

    python benchmarks/tuning_vs_random.py                       # the embedded demo, 3 trials per rung
    python benchmarks/tuning_vs_random.py --quick               # 600 training rows, 1-2 epochs: a few minutes
    python benchmarks/tuning_vs_random.py --data bbc-news --target accuracy=0.97
    python benchmarks/tuning_vs_random.py --quick --data "my data/sentences.csv" --out /tmp/results

Each method's row is printed and appended to ``<out>/<name>.jsonl`` as soon as its climb ends;
``<name>`` comes from the data's slug (file stem + content hash), never from the raw path.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ResultsWriter, command_line, data_slug, markdown_table, run_cli

from advisor.advise import advise
from advisor.config.settings import CONFIG_DIR, build_config
from advisor.verdicts.criteria import PFLOP

METHODS = {
    "greenladder (default first, warm start, lr probe, TPE, paired pruning)": [
        "tuning.sampler=tpe",
        "tuning.pruning=true",
    ],
    # plain optuna: the sampler picks every trial (no default queued first, no warm start)
    "optuna random sampler, no pruning": [
        "tuning.sampler=random",
        "tuning.pruning=false",
        "tuning.default_first=false",
        "tuning.warm_start=false",
    ],
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="built-in name, a file or a folder (default: the demo's dataset)")
    p.add_argument("--target", default=None, help="metric=floor (default: the demo's criteria)")
    p.add_argument("--trials", type=int, default=3, help="trial budget per rung, the same for both methods")
    p.add_argument("--quick", action="store_true", help="subsample to 600 training rows and shorten epochs")
    p.add_argument("--out", default=None, help="folder for the results (default benchmarks/results/)")
    p.add_argument("--runs-dir", default=None, help="where run directories go (default: a temporary folder)")
    p.add_argument(
        "--no-write-results",
        dest="write_results",
        action="store_false",
        help="print the tables only: no <out>/tuning_vs_random-<data>.md/.json/.jsonl",
    )
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    # before anything is trained: a missing file fails here; the demo's dataset is the built-in uncertainty
    args.slug = data_slug(args.data) if args.data else "uncertainty"
    return args


def result_name(args: argparse.Namespace) -> tuple[str, str]:
    """File name and title of the results, from the data's slug."""
    title = f"Tuning on {args.slug}: greenladder's search against optuna's random sampler without pruning"
    return f"tuning_vs_random-{args.slug}" + ("-quick" if args.quick else ""), title + (
        " (quick)" if args.quick else ""
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    name, title = result_name(args)
    writer = ResultsWriter(name, command_line("tuning_vs_random.py", argv), args.out) if args.write_results else None
    if writer is not None:
        print(f"results: {writer.out / name}.md/.json; each method's row in {writer.jsonl} as it finishes", flush=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base = [f"tuning.trials_per_rung={args.trials}", "ladder.rungs=[minilm-l3,minilm-l6]"]
    # the data go in as a value, not as a --set string: a path may hold anything (spaces, '=', '#')
    extra = {"data": {"source": args.data}} if args.data else None
    if args.target:
        metric, _, floor = args.target.partition("=")
        base += [f"criteria.metric={metric}", f"criteria.floor={floor}"]
    if args.quick:
        # one epoch by default, up to two in the search: enough to compare spending, not accuracy
        base += [
            "train.epochs=1",
            "tuning.epochs_max=2",
            "train.max_length=64",
            "data.validation_fraction=0.1",
            "data.test_fraction=0.1",
        ]
    out_root = Path(args.runs_dir or tempfile.mkdtemp(prefix="tuning-vs-random-"))
    rows = []
    for method, overrides in METHODS.items():
        run_dir = out_root / ("tpe" if "TPE" in method else "random")
        config = build_config([CONFIG_DIR / "demo.yaml"], [*base, *overrides], extra=_with_out(extra, run_dir))
        if args.quick:
            from advisor.data import task as data_mod

            config = _quick_data(config, data_mod)
        start = time.perf_counter()
        report = advise(config, progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
        wall = time.perf_counter() - start
        rec = report.recommended
        trained = [r for r in report.runs if r.status != "skipped"]
        rows.append(
            {
                "method": method,
                "trials run": len(trained),
                "stopped early": sum(r.status == "stopped" for r in trained),
                "picked": rec.candidate.name if rec else "none",
                "val metric": rec.metrics.get(config.criteria.metric) if rec else None,
                "meets criteria": bool(rec and report.verdicts[rec.run_id].passed),
                "train PFLOPs": sum(r.cost.train_flops for r in trained) / PFLOP,
                "total PFLOPs": report.total_cost.flops / PFLOP,
                "kWh": report.total_cost.energy_kwh,
                "wall s": wall,
            }
        )
        if writer is not None:
            writer.record(method, rows[-1])
            writer.show(f"{title}: after {method}", tables(rows))
        else:
            _print(rows)
    if writer is not None:
        writer.finish(title, tables(rows), _notes(args), rows)
    return 0


def _with_out(extra: dict[str, Any] | None, run_dir: Path) -> dict[str, Any]:
    return {**(extra or {}), "output": {"out": str(run_dir)}}


def tables(rows: list[dict[str, Any]]) -> list[str]:
    """The methods' table, and the done-when verdicts once both methods are in."""
    cols = list(rows[0])
    out = [markdown_table(cols, [[r[c] for c in cols] for r in rows])]
    if len(rows) == 2:
        a, b = rows
        ratio = a["total PFLOPs"] / b["total PFLOPs"] if b["total PFLOPs"] else None
        # when the baseline passes, neither trains a model: there is no ratio to judge
        untrained = a["total PFLOPs"] == 0 and b["total PFLOPs"] == 0
        verdict = [
            [
                "greenladder's total FLOPs ÷ random's",
                "neither trained a model" if untrained else ratio,
                "n/a" if untrained else ("met" if ratio is not None and ratio < 1 else "MISSED"),
            ],
            ["greenladder's pick meets the criteria", a["meets criteria"], "met" if a["meets criteria"] else "MISSED"],
        ]
        out.append(markdown_table(["done-when (issue 5)", "measured", "verdict"], verdict))
    return out


def _notes(args: argparse.Namespace) -> list[str]:
    return [
        *([f"Data: `{args.data}`."] if args.data else []),
        f"{args.trials} trials per rung for both methods, the default ladder (minilm-l3, minilm-l6), "
        "the demo's split and seed; both stop at the first run that meets the criteria.",
        "Random arm: optuna RandomSampler, no pruning, nothing queued (tuning.default_first=false, "
        "tuning.warm_start=false). greenladder: the shipped settings.",
        "FLOPs are analytic (model shape × tokens seen) and the same formula for both; total includes "
        "validation passes and the final test evaluation.",
    ]


def _quick_data(config, data_mod):  # type: ignore[no-untyped-def]
    """Point the config at a 600-row stratified sample of its dataset, written to a temporary CSV."""
    import csv
    import dataclasses

    full = data_mod.load_task_data(config.data)
    rows = list(zip(data_mod.column(full.train, "text"), data_mod.column(full.train, "label"), strict=True))
    rows += list(zip(data_mod.column(full.validation, "text"), data_mod.column(full.validation, "label"), strict=True))
    rows += list(zip(data_mod.column(full.test, "text"), data_mod.column(full.test, "label"), strict=True))
    import random

    random.Random(0).shuffle(rows)
    path = Path(tempfile.mkdtemp()) / "quick.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows((t, full.label_names[y]) for t, y in rows[:750])
    return dataclasses.replace(config, data=dataclasses.replace(config.data, source=str(path)))


def _print(rows: list[dict]) -> None:
    cols = list(rows[0])
    cells = [[_fmt(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    if len(rows) < 2:
        return
    a, b = rows
    if b["total PFLOPs"]:
        print(f"\ncompute ratio (greenladder / random): {a['total PFLOPs'] / b['total PFLOPs']:.2f}")


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


if __name__ == "__main__":
    sys.exit(run_cli(main))
