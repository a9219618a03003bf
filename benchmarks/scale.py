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

Floors (``--floors``, accuracy; default 0.60 and 0.90), chosen from the TF-IDF baseline's validation
accuracy on the 1k and 50k subsets before any climb ran (``--floor-check``: the climb's pipeline,
C = 16, the best of its grid at 1k and 5k): 0.404 [0.383, 0.426] at 1k, 0.687 [0.666, 0.707] at 50k
(0.521 [0.499, 0.542] at 5k), n = 2,000 validation rows. 0.60 lies between them, above the baseline
at 5k: the baseline's own learning curve crosses it on a fraction of the 50k rows (about 15k when
interpolated log-linearly), and one minilm-l3 fine-tune (lr 1e-4, 3 epochs) on 8k rows cleared it,
0.640 [0.618, 0.660] (0.402 on 2k rows; the minilm-l3 probe 0.512 on 2k, 0.585 on 8k). 0.90 is far
above anything measured and is not expected to be met at any size.

``--quick``: sizes 500 and 2,000, cost-only 20,000 rows, the ladder cut to minilm-l3 with one
trial per rung, and ``--grow-from 250`` so that 2,000 rows (> 2 x 250) take data-size rungs.

Usage::

    python benchmarks/scale.py --quick --threads 1
    python benchmarks/scale.py --threads 2 --work /tmp/scale     # the full benchmark (16 climbs + 200k cost-only)
    python benchmarks/scale.py --floor-check --grid              # the baseline at 1k and 50k rows, every C
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
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
    markdown_table,
    open_results,
    run_cli,
    say,
    work_folder,
)
from benchmarks.scale_child import DATA_OPTIONS  # noqa: E402
from benchmarks.scale_cost import run_cost_only  # noqa: E402
from benchmarks.scale_tables import (  # noqa: E402
    climb_phases,
    climbs_table,
    cost_only_table,
    growth_table,
    phases_table,
    ratio_table,
    recommendation_test,
    validation_scores,
)
from benchmarks.wordnet import DEFAULT_FOLDER, WordNetError, wordnet_rows, write_csv  # noqa: E402

SIZES, QUICK_SIZES = "1000,5000,20000,50000", "500,2000"
FLOORS = "0.60,0.90"
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
    p.add_argument(
        "--floor-check",
        action="store_true",
        help="only the TF-IDF baseline's validation accuracy at each --sizes (the largest C of its grid; --grid: all)",
    )
    p.add_argument("--grid", action="store_true", help="--floor-check fits every C of the baseline's grid")
    p.add_argument(
        "--resume",
        type=Path,
        default=None,
        help="work in this earlier run's folder (<work>/scale-*): its finished climbs and phases are read back",
    )
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
    if not args.data and not (args.wordnet / "data.noun").is_file():
        raise BenchError(
            f"{args.wordnet}/data.noun not found: install WordNet 3.0 with `apt-get install wordnet-base`, "
            "or give --wordnet DIR or --data CSV."
        )
    q = args.quick
    sizes = args.sizes or ("1000,50000" if args.floor_check else QUICK_SIZES if q else SIZES)
    try:
        args.sizes = [int(s) for s in sizes.split(",")]
        args.floors = [float(f) for f in args.floors.split(",")]
    except ValueError:
        raise BenchError(
            "--sizes takes whole numbers and --floors numbers, comma-separated: --sizes 1000,5000"
        ) from None
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
    check = "-floor-check" if args.floor_check else ""
    title = f"The climb's cost against training rows on {args.slug}{quick and ' (quick)'}"
    return f"scale-{args.slug}{check}{quick}", title


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
    from advisor.config.settings import build_config
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
    text = json.dumps(spec)
    if result_path.is_file() and spec_path.is_file() and spec_path.read_text() == text:
        say(f"{name}: read back from {result_path} (measured by an earlier process with the same job)")
        return {**json.loads(result_path.read_text()), "read_back": True}
    spec_path.write_text(text)
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
        "val": validation_scores(report),
        "process_peak_rss_mb": res["peak_rss_mb"],
        "read_back": bool(res.get("read_back")),
        "report": res["report"],
    }


def split_at(args: Any, csv: Path, work: Path, rows: int) -> tuple[Any, Path]:
    """The split every climb at ``rows`` training rows reads (validation and test the same at every size)."""
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
    return data, folder


def floor_check(args: Any, csv: Path, work: Path, writer: Any) -> list[dict[str, Any]]:
    """The TF-IDF baseline's validation accuracy at each size: the climb's pipeline and C grid
    (``advisor.training.baseline``), without its cross-validation; what the default floors were chosen from."""
    from advisor.data.task import column
    from advisor.training.baseline import C_GRID, _pipeline
    from advisor.verdicts.stats import metric_interval

    out = []
    for rows in args.sizes:
        data, _ = split_at(args, csv, work, rows)
        x, y = column(data.train, "text"), column(data.train, "label")
        vy, k = column(data.validation, "label"), len(data.label_names)
        for c in C_GRID if args.grid else (max(C_GRID),):
            say(f"floor check: TF-IDF baseline at {rows} rows, C={c:g}")
            pred = _pipeline(c, args.seed).fit(x, y).predict(column(data.validation, "text"))
            iv = metric_interval("accuracy", vy, [int(p) for p in pred], k, 0.95)
            out.append({"rows": rows, "C": c, "value": iv.value, "low": iv.low, "high": iv.high, "n": iv.n})
            writer.record(f"floor check {rows} C={c:g}", out[-1])
    return out


def run_climbs(args: Any, csv: Path, work: Path, writer: Any) -> list[dict[str, Any]]:
    known = grow_keys_known()
    if not known:
        say("this greenladder has no tuning.grow_from: the 'without' arm alone runs (no data-size rungs exist)")
    climbs = []
    for rows in args.sizes:
        data, folder = split_at(args, csv, work, rows)
        for floor in args.floors:
            for arm in (WITH, WITHOUT):
                c = climb(args, folder, rows, floor, arm, known, work)
                writer.record(f"climb {rows} {floor:g} {arm}", c)
                climbs.append(c)
                writer.show(f"after {rows} rows, floor {floor:g}, {arm}", [climbs_table(climbs)])
    return climbs


def _work(args: Any) -> Any:
    """The folder the run works in: ``--resume``'s (finished jobs read back), else a fresh one."""
    if args.resume is None:
        return work_folder(args.work, "scale-")
    if not (args.resume / "wordnet.csv.gz").is_file() and not args.data:
        raise BenchError(f"--resume {args.resume}: not a scale benchmark's work folder; give the folder the run named.")
    return contextlib.nullcontext(args.resume)


def _check_row(r: dict[str, Any]) -> list[Any]:
    return [r["rows"], r["C"], f"{r['value']:.3f} [{r['low']:.3f}, {r['high']:.3f}], n={r['n']}"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    writer, title = open_results("scale.py", argv, args, result_name, "climb or cost-only phase")
    with _work(args) as work:
        csv = _source_csv(args, work)
        if args.floor_check:
            rows = floor_check(args, csv, work, writer)
            table = markdown_table(["train rows", "C", "validation accuracy [95%], n"], [_check_row(r) for r in rows])
            writer.finish(title + " (floor check)", [table], [], {"floor_check": rows})
            return 0
        climbs = [] if args.no_climbs else run_climbs(args, csv, work, writer)
        cost = run_cost_only(args, csv, work, writer, run_child) if args.cost_only else []
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
    back = [c for c in [*climbs, *cost] if c.get("read_back")]
    if back:
        notes.append(f"{len(back)} of the jobs were measured by an earlier process and read back (--resume)")
    writer.finish(title, tables, notes, {"climbs": climbs, "cost_only": cost})
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
