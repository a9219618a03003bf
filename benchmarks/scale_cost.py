"""The cost-only run of ``benchmarks/scale.py``: ROWS rows of glosses, each phase in its own process.

The rows are the source CSV's in a shuffled order (fixed seed), repeated with a ``[copy N]`` marker
past its end, so that they are distinct texts (the loader drops exact duplicates); a subset smaller
than the source keeps at least :data:`MIN_CLASS_ROWS` rows of each class, so the 15 % validation and
test cuts find every class. The phases (:data:`benchmarks.scale_child.PHASES`) run in turn, each in
a fresh process: loading and splitting, tokenising, the TF-IDF baseline, one embedding pass with the
smallest encoder, a ledger of N records and the reports.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import BenchError, say
from benchmarks.wordnet import write_csv

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


def run_cost_only(
    args: Any, csv: Path, work: Path, writer: Any, run_child: Callable[..., dict[str, Any]]
) -> list[dict[str, Any]]:
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
        try:
            res = run_child({"job": phase, **common, **extra}, work, f"cost-{phase}")
            res.update(phase=phase, rows=args.cost_only, what=_what(phase, res["out"]))
        except BenchError as exc:  # the other phases are still measured
            res = {"phase": phase, "rows": args.cost_only, "what": f"failed: {exc}", "wall_s": None}
            res.update(rss_before_mb=None, peak_rss_mb=None)
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
