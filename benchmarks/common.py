"""What the benchmark scripts share: thread settings, one fixed data split, safe names, tables and result files.

Every method in a benchmark reads the same split: :func:`fixed_split` loads the dataset once with
``advisor.data.task.load_task_data`` (fixed seed), optionally keeps a stratified subset of each split,
and saves it as a ``datasets`` folder with train/validation/test splits, which ``load_task_data``
reads back unchanged (given splits are kept). Nothing in a table is typed by hand.

Names and outputs (reusable by any script here):

* :func:`data_slug` turns ``--data`` (a built-in name, a file or a folder) into a name safe for a
  file: a built-in name as it is, a file or folder as its stem plus 8 hex digits of the SHA-256 of
  its content. Output files and temporary folders are named from it, never from the raw path.
* :class:`ResultsWriter` owns one run's outputs under ``--out`` (default ``benchmarks/results/``):
  ``<name>.jsonl`` gets one JSON line per method as soon as that method finishes (flushed and
  synced), the tables are printed before ``<name>.md`` and ``<name>.json`` are written (each
  atomically), so a failure at the end (a full disk, an unwritable folder) loses nothing measured.
* :class:`BenchError` is a problem the user can fix (a bad ``--data`` or ``--out``);
  :func:`run_cli` turns it, and greenladder's own errors, into one line and exit status 2
  (``BENCH_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from advisor.frozen import thaw

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

#: what a file or folder name may hold here: no separators, spaces, dots or shell metacharacters
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
#: suffixes dropped from a data file's name before it becomes a slug (``reviews.csv.gz`` -> ``reviews``)
_DATA_SUFFIXES = {".gz", ".bz2", ".xz", ".zip", ".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt"}
#: longest stem kept in a slug: the hash, not the stem, makes it unique
_STEM_CHARS = 40


class BenchError(Exception):
    """A problem the user can fix (a bad ``--data`` or ``--out``); the message says what to do."""


def default_threads() -> int:
    """Threads when ``--threads`` is not given: ``$OMP_NUM_THREADS`` when set, else every core."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1


def set_threads(n: int | None = None) -> None:
    """Pin torch (and BLAS/OpenMP) to ``n`` threads (None: :func:`default_threads`)."""
    n = default_threads() if n is None else n
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(n)


def benchmark_parser(doc: str, data: str, data_help: str) -> argparse.ArgumentParser:
    """A parser described by the docstring's first paragraph, with ``--data`` and ``--out``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--data", default=data, help=data_help)
    p.add_argument("--out", default=None, help="folder for the results (default benchmarks/results/)")
    return p


def add_run_options(p: argparse.ArgumentParser, work_help: str) -> None:
    """``--threads`` (torch threads; default ``$OMP_NUM_THREADS``, else every core) and ``--work`` (where runs go)."""
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: $OMP_NUM_THREADS if set, else every core)"
    )
    p.add_argument("--work", type=Path, default=None, help=work_help)


@contextlib.contextmanager
def work_folder(work: Path | None, prefix: str) -> Iterator[Path]:
    """A fresh folder for one run's work: under ``work`` and kept, or temporary and removed at the end.

    Under ``work`` each run gets its own new subfolder (``<prefix><random>``), so a second run never
    reads back, or overwrites, an earlier run's models and ledgers.

    Raises:
        BenchError: ``work`` cannot be created.
    """
    import shutil

    if work is None:
        folder = Path(tempfile.mkdtemp(prefix=prefix))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    try:
        work.expanduser().mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=prefix, dir=work.expanduser()))
    except OSError as exc:
        raise BenchError(
            f"--work {work}: cannot create a folder there ({exc.strerror or exc}); choose another."
        ) from exc
    yield folder


def add_distill_options(p: argparse.ArgumentParser, seeds: str) -> None:
    """The training options both distillation benchmarks take, with the same defaults."""
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--teacher-epochs", type=float, default=3.0)
    p.add_argument("--epochs", type=float, default=3.0, help="student epochs (the no-teacher control's too)")
    p.add_argument("--seeds", default=seeds, help="seeds, comma-separated")
    p.add_argument("--threads", type=int, default=2)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------- names


def _digest(path: Path) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (relative names and bytes, in sorted order)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if f is not path:
            h.update(f.relative_to(path).as_posix().encode("utf-8") + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def safe_name(text: str) -> str:
    """``text`` as it is when it is already a safe file name, else its safe characters plus a hash of it.

    Two different texts never share a result: a changed text carries 8 hex digits of its SHA-256.
    """
    if _SAFE.fullmatch(text):
        return text
    kept = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-_")[:_STEM_CHARS].strip("-_") or "data"
    return f"{kept}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]}"


def data_slug(source: str) -> str:
    """A short name for ``--data`` that is safe in a file name and changes when the data do.

    A built-in dataset name is kept as it is. A file or folder becomes its stem (data suffixes such as
    ``.csv.gz`` dropped, anything but letters, digits, ``_`` and ``-`` turned into ``-``) plus the first
    8 hex digits of the SHA-256 of its content: ``/my data/v1.2/sentences.csv`` -> ``sentences-3f9a1c0b``.

    Raises:
        BenchError: ``source`` is neither a built-in name nor an existing file or folder, and
            looks like a path.
    """
    from advisor.offline.builtin_data import BUILTINS

    if source in BUILTINS:  # advise reads a built-in name first, even when a file of that name exists
        return source
    path = Path(source).expanduser()
    if path.exists():
        name = path.name
        while Path(name).suffix.lower() in _DATA_SUFFIXES:
            name = name[: -len(Path(name).suffix)]
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-_")[:_STEM_CHARS].strip("-_") or "data"
        try:
            return f"{stem}-{_digest(path)[:8]}"
        except OSError as exc:
            raise BenchError(
                f"--data {source}: cannot be read ({exc.strerror or exc}); check its permissions."
            ) from exc
    if _SAFE.fullmatch(source):  # a name advise may still know (it says so itself when it does not)
        return source
    raise BenchError(
        f"--data {source}: no such file or folder. Give a CSV, JSON or Parquet file, a folder, or a built-in "
        f"dataset ({', '.join(BUILTINS)})."
    )


# ----------------------------------------------------------------------------------------------- data


def data_digest(data: Any) -> str:
    """SHA-256 of a ``TaskData`` as read: its label names and every split's texts and labels, in order.

    Changes when any label, text, row or split changes, whatever the file is called; the key of
    every cache a benchmark keeps (with :func:`cache_key`).
    """
    h = hashlib.sha256(json.dumps(list(data.label_names)).encode("utf-8"))
    for name, split in (("train", data.train), ("validation", data.validation), ("test", data.test)):
        h.update(f"\0split {name} {split.num_rows}\0".encode())
        for text, label in zip(split["text"], split["label"], strict=True):
            h.update(json.dumps([text, int(label)], ensure_ascii=False).encode("utf-8") + b"\n")
    return h.hexdigest()


def json_default(value: Any) -> Any:
    """What ``json.dumps`` cannot write itself: a record's read-only mapping (``run.details``, a
    verdict's interval) as the plain dict it holds, so it is written as an object and not as its
    repr; anything else as text."""
    return thaw(value) if isinstance(value, Mapping) else str(value)


def cache_key(digest: str, settings: Mapping[str, Any]) -> str:
    """The key of a cached result: the data's :func:`data_digest` and every setting that changes the result."""
    blob = json.dumps({"data": digest, "settings": dict(settings)}, sort_keys=True, default=json_default)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


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
    root: Path | None = None,
    data_options: Mapping[str, Any] | None = None,
) -> tuple[Any, Path]:
    """Load ``source`` once, subsample, save it, and return (TaskData, folder every method reads).

    Args:
        source: a built-in dataset name or a file (anything ``advise --data`` takes).
        name: names the folder under ``$TMPDIR/greenladder-bench`` (kept out of the repository);
            build it from :func:`data_slug`, e.g. ``f"select-{data_slug(source)}"``. Anything
            unsafe in it is replaced (:func:`safe_name`); sizes and seed are appended, so runs of
            different sizes on the same data do not share a folder.
        train_rows: keep at most this many training rows (stratified); all when None.
        eval_rows: keep at most this many validation and test rows each; all when None.
        seed: the split and subsample seed, the same for every method.
        root: the folder to save it under (a benchmark's ``--work``); ``$TMPDIR/greenladder-bench``
            when None.
        data_options: other ``data`` settings for the first load (e.g. ``{"held_out_cap": None}``:
            carve 15 % shares, which a class of a few dozen rows in 100,000 survives).
    """
    import datasets

    from advisor.config.settings import DataConfig
    from advisor.data.task import load_task_data

    full = load_task_data(DataConfig(source=source, split_seed=seed, **dict(data_options or {})), progress=progress)
    names = list(full.label_names)
    parts = {
        "train": _stratified_head(full.train, train_rows, seed),
        "validation": _stratified_head(full.validation, eval_rows, seed),
        "test": _stratified_head(full.test, eval_rows, seed),
    }
    sizes = f"{train_rows if train_rows is not None else 'all'}-{eval_rows if eval_rows is not None else 'all'}"
    base = root if root is not None else Path(tempfile.gettempdir()) / "greenladder-bench"
    folder = base / f"{safe_name(name)}-{sizes}-seed{seed}"
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


def split_for(args: Any, name: str, root: Path | None = None) -> tuple[Any, Path]:
    """:func:`fixed_split` from a benchmark's usual options (--data, --train-rows, --eval-rows, --seed), under ``root``."""
    return fixed_split(
        args.data, name, train_rows=args.train_rows, eval_rows=args.eval_rows, seed=args.seed, progress=say, root=root
    )


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


# ----------------------------------------------------------------------------------------------- tables


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


# ----------------------------------------------------------------------------------------------- outputs


class ResultsWriter:
    """One benchmark run's outputs: per-method JSON lines as they arrive, tables and files at the end.

    Opening the writer checks that ``out`` can be written before anything is measured. Each
    :meth:`record` appends one line to ``<out>/<name>.jsonl`` (appended, never truncated: a later
    run adds its own lines, each carrying the run's start time). :meth:`finish` prints the tables
    first, then writes ``<name>.md`` and ``<name>.json``.

    Args:
        name: the file stem, e.g. ``select_models-<data_slug>-quick``; must be a safe name.
        command: the command line, written beside the results.
        out: the results folder; ``benchmarks/results/`` when None.

    Raises:
        BenchError: ``out`` cannot be created or written.
        ValueError: ``name`` holds a separator, a space or a dot (build it from :func:`data_slug`).
    """

    def __init__(self, name: str, command: str, out: str | Path | None = None) -> None:
        if not _SAFE.fullmatch(name):
            raise ValueError(f"result name {name!r} must be a safe file stem; build it from data_slug()")
        self.name, self.command = name, command
        self.out = Path(out).expanduser() if out is not None else RESULTS
        self.jsonl = self.out / f"{name}.jsonl"
        self.run_started = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        self.info = machine()
        self._record_error: str | None = None
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self._append({"event": "start", "command": command, "machine": self.info})
        except OSError as exc:
            raise BenchError(
                f"--out {self.out}: cannot write there ({exc.strerror or exc}); choose a writable folder with --out."
            ) from exc

    def _append(self, record: dict[str, Any]) -> None:
        line = json.dumps({"run_started": self.run_started, **record}, default=json_default)
        with self.jsonl.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def record(self, method: str, result: Any) -> None:
        """Append one method's raw result to ``<name>.jsonl``, on disk before this returns.

        A write that fails here is reported on stderr and the run goes on (its tables are still
        printed); :meth:`finish` then fails with the reason.
        """
        try:
            self._append({"event": "result", "method": method, "result": result})
        except OSError as exc:
            self._record_error = f"{self.jsonl}: {exc.strerror or exc}"
            print(f"warning: could not save {method}'s result ({self._record_error}); going on", file=sys.stderr)

    def render(self, title: str, tables: Sequence[str], notes: Sequence[str] = ()) -> str:
        """The Markdown the run writes: title, command, machine line, tables, notes."""
        info = self.info
        body = [f"### {title}", "", f"`{self.command}`", ""]
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
        return "\n".join(body).rstrip() + "\n"

    def show(self, heading: str, tables: Sequence[str]) -> None:
        """Print the tables so far (after each method), so that a crash later leaves them on screen."""
        print(f"\n--- {heading} ---", flush=True)
        for t in tables:
            print(t + "\n", flush=True)

    def attach(self, suffix: str, content: str) -> Path | None:
        """Write ``content`` beside the results as ``<name>-<suffix>`` (e.g. a report a row rests on).

        A write that fails is reported on stderr and returns None: the measurements go on.

        Raises:
            ValueError: ``suffix`` is not a safe file name with at most one extension.
        """
        from advisor.atomic import write_text_atomic

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[a-z]+)?", suffix):
            raise ValueError(f"attachment suffix {suffix!r} must be a safe file name, e.g. 'report.json'")
        path = self.out / f"{self.name}-{suffix}"
        try:
            write_text_atomic(path, content)
        except OSError as exc:
            print(f"warning: could not write {path} ({exc.strerror or exc}); going on", file=sys.stderr)
            return None
        return path

    def finish(self, title: str, tables: Sequence[str], notes: Sequence[str], raw: Any) -> Path:
        """Print the final tables, then write ``<name>.md`` and ``<name>.json``; return the ``.md`` path.

        Raises:
            BenchError: a file could not be written; the message names the JSON lines that hold
                every method's result.
        """
        text = self.render(title, tables, notes)
        print(flush=True)
        print(text, flush=True)
        md, js = self.out / f"{self.name}.md", self.out / f"{self.name}.json"
        payload = json.dumps(
            {"command": self.command, "machine": self.info, "results": raw}, indent=2, default=json_default
        )
        from advisor.atomic import write_text_atomic

        for path, content in ((js, payload), (md, text)):
            try:
                write_text_atomic(path, content)
            except OSError as exc:
                saved = (
                    f"each method's result is in {self.jsonl}"
                    if self._record_error is None
                    else f"the per-method results could not be saved either ({self._record_error})"
                )
                raise BenchError(
                    f"could not write {path} ({exc.strerror or exc}); the tables are printed above and {saved}. "
                    "Free space or choose another folder with --out."
                ) from exc
        with contextlib.suppress(OSError):  # the files are written; this line only marks the run complete
            self._append({"event": "finished", "files": [str(md), str(js)]})
        if self._record_error is not None:
            raise BenchError(f"the tables were written, but per-method results were not saved: {self._record_error}")
        return md


def write_results(
    name: str,
    title: str,
    command: str,
    tables: Sequence[str],
    notes: Sequence[str],
    raw: Any,
    out: str | Path | None = None,
) -> Path:
    """Print the tables and write ``<name>.md`` and ``<name>.json`` under ``out`` in one go.

    For a script that has nothing to save per method; one that does opens a :class:`ResultsWriter`
    at its start and records each method as it finishes. An unsafe ``name`` is made safe.
    """
    writer = ResultsWriter(safe_name(name), command, out)
    writer.record("all", raw)
    return writer.finish(title, tables, notes, raw)


def earlier_rows(jsonl: Path, skip: str = "") -> list[dict[str, Any]]:
    """The result rows of the latest run recorded in ``jsonl`` (a :class:`ResultsWriter`'s file), oldest first.

    A run's rows share its ``run_started``; the run started at ``skip`` (the one now writing) is
    passed over. A file that does not exist holds none.

    Raises:
        BenchError: a line of the file is not JSON.
    """
    if not jsonl.is_file():
        return []
    runs: dict[str, list[dict[str, Any]]] = {}
    latest = None
    for number, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BenchError(f"{jsonl} line {number}: not JSON ({exc.msg}); remove the line or the file.") from exc
        started = record.get("run_started", "")
        if started == skip:
            continue
        if record.get("event") == "start":
            runs[started], latest = [], started
        elif record.get("event") == "result" and isinstance(record.get("result"), dict):
            runs.setdefault(started, []).append(record["result"])
    return runs.get(latest, []) if latest is not None else []


def open_results(
    script: str,
    argv: Sequence[str] | None,
    args: Any,
    result_name: Callable[[Any], tuple[str, str]],
    each: str,
) -> tuple[ResultsWriter, str]:
    """A script's start: its threads set, its :class:`ResultsWriter` opened, where results go said.

    Args:
        script: the file name under ``benchmarks/``, for the command line written beside the results.
        argv: the arguments as given to ``main`` (None: ``sys.argv``).
        args: the parsed arguments; ``args.threads`` and ``args.out`` are read.
        result_name: the script's ``args -> (file stem, title)``.
        each: what one line of ``<name>.jsonl`` holds, e.g. ``"method's row"``.

    Returns:
        The writer (a bad ``--out`` has failed here, before anything is measured) and the title.

    Raises:
        BenchError: ``args.out`` cannot be created or written.
    """
    name, title = result_name(args)
    set_threads(args.threads)
    writer = ResultsWriter(name, command_line(script, argv), args.out)
    say(f"results: {writer.out / name}.md/.json; each {each} in {writer.jsonl} as it finishes")
    return writer, title


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The command as the user typed it, arguments quoted where the shell needs it."""
    import shlex

    args = list(argv) if argv is not None else sys.argv[1:]
    return shlex.join(["python", f"benchmarks/{script}", *args])


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run a script's ``main``: a known error becomes one line on stderr and exit status 2.

    Known: :class:`BenchError` and greenladder's own errors (a bad CSV, an unknown model). Anything
    else still raises with its traceback; ``BENCH_DEBUG=1`` shows the traceback of known ones too.
    """
    from advisor.errors import GreenladderError

    try:
        return main(argv) or 0
    except (BenchError, GreenladderError) as exc:
        if os.environ.get("BENCH_DEBUG"):
            raise
        print(f"error: {exc} (set BENCH_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2
