"""How the climb's cost grows with the training rows: WordNet glosses at 1k, 5k, 20k and 50k rows.

Data: WordNet 3.0 glosses labelled by lexicographer file (45 classes, 117,659 rows;
:mod:`benchmarks.wordnet`, built from the Debian package wordnet-base unless ``--data`` names a
CSV). The full data are split once with ``data.held_out_cap`` off (15 % validation and test
shares: with the 2,000-row cap the product refuses the data, its smallest class having 42 rows);
every size then trains on a stratified subset of the training split and is judged on the same
2,000 validation and 2,000 test rows (:func:`benchmarks.common.fixed_split`, seed 0).

For each size, floor and arm, greenladder's climb runs through its Python API
(``advisor.advise.advise``) in a subprocess of its own, so that each climb's peak memory is its
own (``resource.getrusage``). Arms: with data-size rungs (``tuning.grow_from`` = ``--grow-from``,
``tuning.grow_factor`` = ``--grow-factor``) and without (``tuning.grow_from=null``). A greenladder
that does not know ``tuning.grow_from`` runs the "without" arm alone, with no override, and the
tables say so. Printed and written under ``--out`` (``scale-<data>.md/.json``; ``-quick`` added):

1. per size, floor and arm: the recommendation, its test accuracy (95 % Wilson interval, n) against
   the floor, the climb's FLOPs, kWh and wall time, the tool's overhead, the process's peak RSS;
2. per phase (baseline, each probe, each fine-tune, the test scoring, the tool overhead = the
   climb's wall time minus its runs'): wall time, FLOPs, peak RSS (``report.json``'s run costs);
3. each phase's growth exponent: the least-squares slope of log cost against log rows;
4. the whole climb's compute at the largest size over that at a tenth of it (50k / 5k);
5. the cost-only run (``--cost-only ROWS``, default 200,000; WordNet glosses repeated with a
   ``[copy N]`` marker past 117,659): loading and splitting, tokenising, the TF-IDF baseline, one
   probe embedding pass of every row with minilm-l3, a ledger of ``--ledger-records`` records and
   the reports; each in its own subprocess: wall time and peak RSS.

Floors (``--floors``, accuracy): the defaults were chosen from the TF-IDF baseline's validation
accuracy measured on the 1k and 50k subsets before any climb ran (the product's pipeline and C
grid, ``benchmarks/scale.py`` docs page has the figures): 0.55 is above the baseline at 1k and meant
to be met by an encoder on a fraction of 50k rows; 0.90 is far above anything measured and not
expected to be met.

``--quick``: sizes 500 and 2,000, cost-only 20,000 rows, the ladder cut to minilm-l3 with one
trial per rung, and ``--grow-from 250`` so that 2,000 rows (> 2 x 250) take data-size rungs.

Usage::

    python benchmarks/scale.py --quick --threads 1
    python benchmarks/scale.py --threads 2 --work /tmp/scale     # the full benchmark: days on 2 CPU cores
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import (  # noqa: E402
    BenchError,
    add_run_options,
    benchmark_parser,
    data_slug,
    fixed_split,
    open_results,
    run_cli,
    say,
    work_folder,
)
from benchmarks.scale_child import DATA_OPTIONS  # noqa: E402
from benchmarks.scale_tables import (  # noqa: E402
    climb_phases,
    climbs_table,
    cost_only_table,
    growth_table,
    phases_table,
    ratio_table,
    recommendation_test,
)
from benchmarks.wordnet import DEFAULT_FOLDER, WordNetError, wordnet_rows, write_csv  # noqa: E402

SIZES, QUICK_SIZES = "1000,5000,20000,50000", "500,2000"
FLOORS = "0.55,0.90"
EVAL_ROWS = 2000
WITH, WITHOUT = "with", "without"


def _parser() -> Any:
    p = benchmark_parser(__doc__, "", "a CSV of text,label (default: WordNet glosses built from --wordnet)")
    p.add_argument("--wordnet", type=Path, default=DEFAULT_FOLDER, help="folder of WordNet's data.{noun,verb,adj,adv}")
    p.add_argument("--sizes", default=None, help=f"training rows, comma-separated (default {SIZES})")
    p.add_argument("--floors", default=FLOORS, help="accuracy floors, comma-separated")
    p.add_argument("--grow-from", type=int, default=None, help="tuning.grow_from of the 'with' arm (default 2000)")
    p.add_argument("--grow-factor", type=int, default=4, help="tuning.grow_factor of the 'with' arm")
    p.add_argument("--rungs", default=None, help="ladder.rungs, comma-separated (default: the offline ladder's)")
    p.add_argument("--trials", type=int, default=None, help="tuning.trials_per_rung (default: greenladder's)")
    p.add_argument("--set", action="append", default=[], help="another override for every climb (repeatable)")
    p.add_argument("--cost-only", type=int, default=None, help="rows of the cost-only run (default 200000; 0: none)")
    p.add_argument("--ledger-records", type=int, default=20, help="records the cost-only run writes to a ledger")
    p.add_argument("--no-climbs", action="store_true", help="the cost-only run alone")
    p.add_argument("--max-length", type=int, default=128, help="tokens per text (train.max_length)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}, cost-only 20000, minilm-l3 only")
    add_run_options(p, "folder for the data, splits and run directories (kept; default: a temporary one)")
    return p


def parse_args(argv: list[str] | None) -> Any:
    """The options, with the defaults --quick changes filled in and the numbers checked.

    Raises:
        BenchError: a number out of range, or a --data file that does not exist.
    """
    args = _parser().parse_args(argv)
    args.slug = data_slug(args.data) if args.data else "wordnet"  # a missing file fails here
    q = args.quick
    args.sizes = [int(s) for s in (args.sizes or (QUICK_SIZES if q else SIZES)).split(",")]
    args.floors = [float(f) for f in args.floors.split(",")]
    args.grow_from = args.grow_from if args.grow_from is not None else (250 if q else 2000)
    args.cost_only = args.cost_only if args.cost_only is not None else (20_000 if q else 200_000)
    args.rungs = args.rungs if args.rungs is not None else ("minilm-l3" if q else "")
    args.trials = args.trials if args.trials is not None else (1 if q else None)
    if min(args.sizes) < 50 or not all(0 < f < 1 for f in args.floors) or args.cost_only < 0:
        raise BenchError("--sizes must be >= 50 rows, --floors between 0 and 1, --cost-only >= 0; fix the option.")
    return args


def result_name(args: Any) -> tuple[str, str]:
    """File name and title of the results, from the data's slug."""
    quick = "-quick" if args.quick else ""
    return f"scale-{args.slug}{quick}", f"The climb's cost against training rows on {args.slug}{quick and ' (quick)'}"


def _source_csv(args: Any, work: Path) -> Path:
    """--data, or WordNet's glosses written to ``work/wordnet.csv.gz``."""
    if args.data:
        return Path(args.data)
    try:
        return write_csv(wordnet_rows(args.wordnet), work / "wordnet.csv.gz")
    except WordNetError as exc:
        raise BenchError(str(exc)) from exc


def grow_keys_known() -> bool:
    """Whether the installed greenladder takes ``tuning.grow_from`` (data-size rungs)."""
    from advisor.config import build_config
    from advisor.errors import ConfigError

    try:
        build_config(overrides=["tuning.grow_from=2000"])
    except ConfigError as exc:
        if "grow_from" in str(exc):
            return False
        raise
    return True


def run_child(spec: dict[str, Any], work: Path, name: str) -> dict[str, Any]:
    """Run one job of :mod:`benchmarks.scale_child` in a fresh Python process; its result.

    Raises:
        BenchError: the process failed (its output is above).
    """
    spec_path, result_path = work / f"{name}.spec.json", work / f"{name}.result.json"
    spec_path.write_text(json.dumps({**spec}))
    result_path.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    cmd = [sys.executable, "-m", "benchmarks.scale_child", str(spec_path), str(result_path)]
    rc = subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode
    if rc != 0 or not result_path.is_file():
        raise BenchError(f"{name} failed (exit status {rc}); its output is above")
    return json.loads(result_path.read_text())


def _overrides(args: Any, folder: Path, floor: float, arm: str, known: bool, out: Path) -> list[str]:
    o = [
        f"data.source={folder}",
        f"data.split_seed={args.seed}",
        "criteria.metric=accuracy",
        f"criteria.floor={floor}",
        "ladder.distil_on_ceiling=false",
        f"train.max_length={args.max_length}",
        f"train.seed={args.seed}",
        f"output.out={out}",
    ]
    if args.rungs:
        o.append(f"ladder.rungs=[{args.rungs}]")
    if args.trials is not None:
        o.append(f"tuning.trials_per_rung={args.trials}")
    if known and arm == WITH:
        o += [f"tuning.grow_from={args.grow_from}", f"tuning.grow_factor={args.grow_factor}"]
    elif known:
        o.append("tuning.grow_from=null")
    return o + list(args.set)


def climb(args: Any, folder: Path, rows: int, floor: float, arm: str, known: bool, work: Path) -> dict[str, Any]:
    """One climb in its own process, summarised: recommendation, test interval, phases, peak RSS."""
    row: dict[str, Any] = {"rows": rows, "floor": floor, "arm": arm}
    if arm == WITH and not known:
        return {**row, "skipped": "this greenladder has no tuning.grow_from (rerun once data-size rungs are merged)"}
    name = f"climb-{rows}-{floor:g}-{arm}"
    out = work / "runs" / name
    say(f"{name}: climbing ({rows} training rows, floor {floor:g}, data-size rungs {arm})")
    try:
        res = run_child({"job": "climb", "overrides": _overrides(args, folder, floor, arm, known, out)}, work, name)
    except BenchError as exc:
        return {**row, "skipped": str(exc)}
    report = json.loads(Path(res["report"]).read_text())
    test = recommendation_test(report)
    return {
        **row,
        "recommendation": test["run_id"] if test else None,
        "test": test,
        "stop_reason": report.get("stop_reason"),
        "phases": climb_phases(report, res["wall_s"]),
        "process_peak_rss_mb": res["peak_rss_mb"],
        "report": res["report"],
    }


def run_climbs(args: Any, csv: Path, work: Path, writer: Any) -> list[dict[str, Any]]:
    known = grow_keys_known()
    if not known:
        say("this greenladder has no tuning.grow_from: the 'without' arm alone runs (no data-size rungs exist)")
    climbs = []
    for rows in args.sizes:
        data, folder = fixed_split(
            str(csv),
            f"scale-{data_slug(str(csv))}",
            train_rows=rows,
            eval_rows=EVAL_ROWS,
            seed=args.seed,
            progress=say,
            root=work / "splits",
            data_options=DATA_OPTIONS,
        )
        args.held_out = (data.validation.num_rows, data.test.num_rows)
        for floor in args.floors:
            for arm in (WITH, WITHOUT):
                c = climb(args, folder, rows, floor, arm, known, work)
                writer.record(f"climb {rows} {floor:g} {arm}", c)
                climbs.append(c)
                writer.show(f"after {rows} rows, floor {floor:g}, {arm}", [climbs_table(climbs)])
    return climbs


#: rows of each class a cost-only subset keeps at least (all of a class that has fewer), so the
#: 15 % validation and test cuts find every class
MIN_CLASS_ROWS = 30


def cost_only_rows(rows: Sequence[tuple[str, str]], n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` of ``rows`` in a shuffled order (fixed ``seed``): all of them, then copies marked
    ``[copy N]`` past their end; fewer than all: each class keeps at least :data:`MIN_CLASS_ROWS`."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    if n >= len(rows):
        return [
            rows[order[i % len(rows)]] if i < len(rows) else _copy(rows[order[i % len(rows)]], i // len(rows))
            for i in range(n)
        ]
    taken: dict[str, int] = {}
    keep = set()
    for i in order:  # each class's first rows in the shuffled order
        label = rows[i][1]
        if taken.get(label, 0) < MIN_CLASS_ROWS:
            taken[label] = taken.get(label, 0) + 1
            keep.add(i)
    for i in order:
        if len(keep) >= n:
            break
        keep.add(i)
    return [rows[i] for i in order if i in keep]


def _copy(row: tuple[str, str], copy: int) -> tuple[str, str]:
    return f"{row[0]} [copy {copy}]", row[1]


def cost_only_csv(source: Path, n: int, dest: Path) -> Path:
    """:func:`cost_only_rows` of a text,label CSV, written to ``dest``."""
    import pandas as pd

    base = pd.read_csv(source, keep_default_na=False)
    rows = list(zip(base["text"].astype(str), base["label"].astype(str), strict=True))
    return write_csv(cost_only_rows(rows, n), dest)


def run_cost_only(args: Any, csv: Path, work: Path, writer: Any) -> list[dict[str, Any]]:
    """Each phase of the cost-only run in its own process: wall time, RSS before it, process peak."""
    big = cost_only_csv(csv, args.cost_only, work / f"cost-only-{args.cost_only}.csv")
    common = {"csv": str(big), "max_length": args.max_length}
    phases = []
    for phase, extra in (
        ("load", {}),
        ("tokenise", {}),
        ("baseline", {"work": str(work / "cost-only-baseline")}),
        ("embed", {}),
        ("ledger", {"records": args.ledger_records, "work": str(work / "cost-only-ledger")}),
    ):
        say(f"cost-only {args.cost_only} rows: {phase}")
        res = run_child({"job": phase, **common, **extra}, work, f"cost-{phase}")
        res.update(phase=phase, rows=args.cost_only, what=_what(phase, res["out"]))
        writer.record(f"cost-only {phase}", res)
        phases.append(res)
    return phases


def _what(phase: str, out: Any) -> str:
    if phase == "load":
        return f"train {out['train']}, validation {out['validation']}, test {out['test']} rows"
    if phase == "tokenise":
        return f"{out} tokens (train + validation)"
    if phase == "baseline":
        return f"validation accuracy {out:.3f}"
    if phase == "embed":
        return f"embeddings {out[0]} x {out[1]}"
    return f"report.json {out / 1e6:.2f} MB"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    writer, title = open_results("scale.py", argv, args, result_name, "climb or cost-only phase")
    with work_folder(args.work, "scale-") as work:
        csv = _source_csv(args, work)
        climbs = [] if args.no_climbs else run_climbs(args, csv, work, writer)
        cost = run_cost_only(args, csv, work, writer) if args.cost_only else []
    held = getattr(args, "held_out", (EVAL_ROWS, EVAL_ROWS))
    tables = []
    if climbs:
        tables += [climbs_table(climbs), phases_table(climbs), growth_table(climbs), ratio_table(climbs, args.sizes)]
    if cost:
        tables.append(cost_only_table(cost))
    notes = [
        f"data: {args.data or 'WordNet 3.0 glosses -> lexicographer file (45 classes)'}; validation "
        f"{held[0]} and test {held[1]} rows, the same at every size; one split seed ({args.seed}): an anecdote, "
        "not a spread",
        "test accuracy: the recommendation's, Wilson 95 % interval; 'test >= floor' compares the point estimate",
        "tool overhead: the climb's wall time minus its runs' and the test scoring's (data, model loading, "
        "judging, ledger, reports); peak RSS of a phase: the largest of its runs' peaks as the meter saw them",
        "growth exponent: least-squares slope of log cost vs log rows over the sizes a phase ran at (1: linear)",
    ]
    writer.finish(title, tables, notes, {"climbs": climbs, "cost_only": cost})
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
