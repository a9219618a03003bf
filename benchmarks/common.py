"""What the benchmark scripts share: thread settings, one fixed data split, tables and result files.

Every method in a benchmark reads the same split: :func:`fixed_split` loads the dataset once with
``advisor.data.load_task_data`` (fixed seed), optionally keeps a stratified subset of each split,
and saves it as a ``datasets`` folder with train/validation/test splits, which ``load_task_data``
reads back unchanged (given splits are kept). Tables are printed and written, with the raw numbers,
under ``benchmarks/results/``; nothing in a table is typed by hand.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

#: acceptance floors used when --target is not given: the same for every method of a benchmark
DEFAULT_TARGETS = {
    "uncertainty": ("accuracy", 0.75),  # the demo's floor (configs/demo.yaml)
    "bbc-news": ("accuracy", 0.95),
    # set before any transformer ran on it, above the TF-IDF baseline's 0.943 on a 600-row
    # benchmark subset (0.97 first; lowered so that a small rung has a floor it can plausibly meet)
    "spamassassin": ("accuracy", 0.95),
    "drug-reviews": ("accuracy", 0.70),
    "drug-reviews-binary": ("accuracy", 0.78),
}


def set_threads(n: int = 2) -> None:
    """Pin torch (and BLAS/OpenMP) to ``n`` threads: the machine is small and shared."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(n)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _stratified_head(split: Any, rows: int | None, seed: int) -> Any:
    """At most ``rows`` rows of ``split``, keeping class shares (scikit-learn's stratified split)."""
    if rows is None or rows >= split.num_rows:
        return split
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(list(range(split.num_rows)), train_size=rows, stratify=split["label"], random_state=seed)
    return split.select(sorted(keep))


def fixed_split(
    source: str,
    name: str,
    *,
    train_rows: int | None = None,
    eval_rows: int | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> tuple[Any, Path]:
    """Load ``source`` once, subsample, save it, and return (TaskData, folder every method reads).

    Args:
        source: a built-in dataset name or a file (anything ``advise --data`` takes).
        name: folder name under ``$TMPDIR/greenladder-bench`` (kept out of the repository).
        train_rows: keep at most this many training rows (stratified); all when None.
        eval_rows: keep at most this many validation and test rows each; all when None.
        seed: the split and subsample seed, the same for every method.
    """
    import datasets

    from advisor.config import DataConfig
    from advisor.data import load_task_data

    full = load_task_data(DataConfig(source=source, split_seed=seed), progress=progress)
    names = list(full.label_names)
    parts = {
        "train": _stratified_head(full.train, train_rows, seed),
        "validation": _stratified_head(full.validation, eval_rows, seed),
        "test": _stratified_head(full.test, eval_rows, seed),
    }
    folder = Path(tempfile.gettempdir()) / "greenladder-bench" / name
    dd = datasets.DatasetDict(
        {
            k: datasets.Dataset.from_dict({"text": list(v["text"]), "label": [names[i] for i in v["label"]]})
            for k, v in parts.items()
        }
    )
    dd.save_to_disk(str(folder))
    data = load_task_data(DataConfig(source=str(folder), split_seed=seed))
    if list(data.label_names) != names:
        raise RuntimeError(f"label names changed on the round trip: {names} -> {list(data.label_names)}")
    return data, folder


def machine() -> dict[str, Any]:
    """Where and when the numbers were taken (load average included: the machine is shared)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average_1m_at_start": os.getloadavg()[0],
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def fmt(x: Any, digits: int = 3) -> str:
    """A table cell: numbers to ``digits`` significant figures, None as an em dash."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if x != x:
            return "—"
        if x == 0:
            return "0"
        if abs(x) >= 1e5 or abs(x) < 1e-3:
            return f"{x:.{digits - 1}e}"
        return f"{x:.{digits}g}" if abs(x) >= 1 else f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return str(x)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[fmt(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def write_results(name: str, title: str, command: str, tables: Sequence[str], notes: Sequence[str], raw: Any) -> Path:
    """Print the tables and write ``<name>.md`` (tables + notes + command) and ``<name>.json`` (raw)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    body = [f"### {title}", "", f"`{command}`", ""]
    body += [
        f"{info['date']}; {info['cpu']}, {info['cores']} cores, torch {info['torch']} with "
        f"{info['torch_threads']} threads; 1-minute load average at the start {info['load_average_1m_at_start']:.1f} "
        f"on {info['cores']} cores (a lagging average: it includes a job that just ended; other jobs running "
        "alongside inflate timings and energy, FLOPs are analytic and unaffected).",
        "",
    ]
    for t in tables:
        body += [t, ""]
    body += [f"- {n}" for n in notes]
    text = "\n".join(body).rstrip() + "\n"
    (RESULTS / f"{name}.md").write_text(text, encoding="utf-8")
    (RESULTS / f"{name}.json").write_text(
        json.dumps({"command": command, "machine": info, "results": raw}, indent=2, default=str), encoding="utf-8"
    )
    print()
    print(text)
    return RESULTS / f"{name}.md"
