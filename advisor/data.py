"""Load a text-classification dataset, check it, and split it: the first step of every climb.

``load_task_data`` accepts a built-in name (see :mod:`advisor.builtin_data`), a CSV/TSV/JSON/
JSONL/Parquet file (optionally gzipped), a folder written by ``datasets``' ``save_to_disk``, or a
hub id (online only). Whatever the source, the result is a :class:`TaskData`: train, validation
and test splits with columns ``text`` (str) and ``label`` (int 0..K-1, labels sorted by name).

Bad data fails early with one :class:`~advisor.errors.DataError` naming the problem and the fix,
before anything is written: files are read through ``datasets`` into memory with a throwaway
cache folder, so a failed load leaves no cache behind.
"""

from __future__ import annotations

import codecs
import contextlib
import difflib
import gzip
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from sklearn.model_selection import train_test_split

from advisor.builtin_data import BUILTINS, load_builtin
from advisor.config import MAX_VALIDATION_FRACTION, MIN_VALIDATION_FRACTION, DataConfig
from advisor.errors import DataError

Progress = Callable[[str], None] | None

#: file suffix -> ``datasets`` packaged builder (a trailing ``.gz`` is allowed on each)
FILE_FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
#: preferred names, in order, when the text column is not given
TEXT_NAMES = ("text", "sentence", "review", "content")
#: names that mark the label column when it is not given
LABEL_NAMES = ("label", "labels", "class", "category", "target", "y")
#: split names we recognise, mapped to ours
SPLIT_NAMES = {"train": "train", "validation": "validation", "valid": "validation", "dev": "validation", "test": "test"}
#: a label column detected by cardinality has at most this many distinct values
MAX_DETECTED_CLASSES = 100


@dataclass(frozen=True)
class TaskData:
    """The dataset of one task, ready for training: three splits of ``text`` and ``label``."""

    train: datasets.Dataset
    validation: datasets.Dataset
    test: datasets.Dataset
    #: class names; label ``i`` means ``label_names[i]``
    label_names: tuple[str, ...]
    #: human description of where the data came from (with provenance and licence for built-ins)
    source: str
    #: the columns the text and label were read from, as named in the source
    text_column: str
    label_column: str
    #: exact duplicate texts removed (within the pool, or within each given split)
    duplicates_removed: int = 0
    #: texts of the given test split that also occur in the given train split (kept, reported)
    cross_split_duplicates: int = 0
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.label_names) < 2:
            raise ValueError(f"TaskData needs at least two label names, got {self.label_names!r}")
        for name, split in self.splits().items():
            if list(split.column_names) != ["text", "label"]:
                raise ValueError(f"TaskData.{name} must have columns ['text', 'label'], got {split.column_names}")
            labels = column(split, "label")
            if labels and not 0 <= min(labels) <= max(labels) < len(self.label_names):
                raise ValueError(f"TaskData.{name} has labels outside 0..{len(self.label_names) - 1}")

    def splits(self) -> dict[str, datasets.Dataset]:
        return {"train": self.train, "validation": self.validation, "test": self.test}

    def summary(self) -> dict[str, Any]:
        """Rows per split, class counts and text lengths in words, for the report."""
        out: dict[str, Any] = {
            "source": self.source,
            "text_column": self.text_column,
            "label_column": self.label_column,
            "label_names": list(self.label_names),
            "duplicates_removed": self.duplicates_removed,
            "cross_split_duplicates": self.cross_split_duplicates,
            "warnings": list(self.warnings),
            "splits": {},
        }
        for name, split in self.splits().items():
            words = np.array([len(t.split()) for t in column(split, "text")]) if split.num_rows else np.zeros(1)
            counts = Counter(column(split, "label"))
            out["splits"][name] = {
                "rows": split.num_rows,
                "class_counts": {label: counts.get(i, 0) for i, label in enumerate(self.label_names)},
                "mean_words": round(float(words.mean()), 1),
                "p95_words": round(float(np.percentile(words, 95)), 1),
            }
        return out


def validation_share(cfg: DataConfig, total_rows: int, wanted_rows: int | None) -> float:
    """The validation fraction to carve: the configured one, or ``wanted_rows`` within the bounds."""
    if cfg.validation_fraction is not None:
        return cfg.validation_fraction
    if not wanted_rows or total_rows <= 0:
        return MIN_VALIDATION_FRACTION
    return min(max(wanted_rows / total_rows, MIN_VALIDATION_FRACTION), MAX_VALIDATION_FRACTION)


def load_task_data(cfg: DataConfig, progress: Progress = None, validation_rows: int | None = None) -> TaskData:
    """Load, check, deduplicate and split the dataset named by ``cfg.source``.

    Given train/validation/test splits are kept; missing ones are carved out of train (or out of
    the whole data) by a stratified split with ``cfg.split_seed``, so reruns see the same rows.

    Raises:
        DataError: the source cannot be found or read, a column is missing, labels or texts are
            empty, there is a single class, or a class is too small for the split.
    """
    say = progress or (lambda _msg: None)
    raw, where, source = _read_source(cfg.source, say)
    splits = _named_splits(raw, where)
    first = splits["train"]
    text_col = cfg.text_column if cfg.text_column is not None else _detect_text_column(first, cfg.label_column, where)
    _require_column(splits, text_col, "text_column", where)
    label_col = cfg.label_column if cfg.label_column is not None else _detect_label_column(first, text_col, where)
    _require_column(splits, label_col, "label_column", where)
    if text_col == label_col:
        raise DataError(
            f"{where}: text and label are both column {text_col!r}; set data.text_column and data.label_column."
        )

    rows = {name: _extract(split, text_col, label_col, name, where) for name, split in splits.items()}
    warnings: list[str] = []
    removed = 0
    for name, (texts, labels) in rows.items():
        rows[name], dropped, conflicting = _dedup(texts, labels)
        removed += dropped
        if conflicting:
            warnings.append(
                f"{conflicting} duplicate texts in {name} had different labels; kept the first label of each"
            )
    label_names = _label_names([label for _, labels in rows.values() for label in labels], label_col, where)

    cross = 0
    if "test" in rows:
        cross = len(set(rows["train"][0]) & set(rows["test"][0]))
        if cross:
            warnings.append(f"{cross} texts of the test split also occur in train; test scores may be optimistic")
    if "validation" in rows and (overlap := len(set(rows["train"][0]) & set(rows["validation"][0]))):
        warnings.append(f"{overlap} texts of the validation split also occur in train")
    seen = set(rows["train"][1])
    for name in ("validation", "test"):
        if name in rows and (unseen := sorted(set(rows[name][1]) - seen)):
            warnings.append(f"class(es) {', '.join(map(repr, unseen))} of {name} never occur in train")

    total = sum(len(texts) for texts, _ in rows.values())
    share = validation_share(cfg, total, validation_rows)
    rows = _carve_missing_splits(rows, label_names, cfg, where, share)
    if validation_rows and len(rows["validation"][0]) < validation_rows:
        warnings.append(
            f"the validation split has {len(rows['validation'][0])} rows, fewer than the {validation_rows} that an "
            f"interval of +-{cfg.validation_margin:g} near the floor needs: models that close to the floor will be "
            "undecided (more labelled rows, a wider data.validation_margin or a lower criteria.confidence decide more)"
        )
    index = {name: i for i, name in enumerate(label_names)}
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(label_names))}
    )
    built = {
        name: datasets.Dataset.from_dict({"text": texts, "label": [index[x] for x in labels]}, features=features)
        for name, (texts, labels) in rows.items()
    }
    data = TaskData(
        train=built["train"],
        validation=built["validation"],
        test=built["test"],
        label_names=label_names,
        source=source,
        text_column=text_col,
        label_column=label_col,
        duplicates_removed=removed,
        cross_split_duplicates=cross,
        warnings=tuple(warnings),
    )
    say(
        f"{where}: {len(label_names)} classes; train {data.train.num_rows}, validation "
        f"{data.validation.num_rows}, test {data.test.num_rows} rows; {removed} duplicate texts removed"
    )
    return data


def column(split: datasets.Dataset, name: str) -> list[Any]:
    """One column as a Python list, in one Arrow conversion (row-by-row access is ~100x slower)."""
    return split.with_format("arrow")[name].to_pylist()


# --- reading ---------------------------------------------------------------------------------


def _read_source(source: str, say: Callable[[str], None]) -> tuple[datasets.DatasetDict, str, str]:
    """Return the raw splits, a short name for messages, and a description of the source."""
    if source in BUILTINS:
        info = BUILTINS[source]
        say(f"loading built-in dataset {source!r} ...")
        description = f"built-in {source!r}: {info.description}. Source: {info.provenance}. Licence: {info.licence}."
        return load_builtin(source, say), f"built-in {source!r}", description
    path = Path(source).expanduser()
    if _looks_like_path(source):
        kind = "saved dataset" if path.is_dir() else "file"
        return _read_path(path, say), path.name or str(path), f"{kind} {path.resolve()}"
    return _read_hub(source, say), source, f"hub dataset {source!r}"


def _looks_like_path(source: str) -> bool:
    path = Path(source).expanduser()
    return path.exists() or source.startswith(("/", ".", "~")) or bool(path.suffix) or "\\" in source


def _read_path(path: Path, say: Callable[[str], None]) -> datasets.DatasetDict:
    if not path.exists():
        raise DataError(
            f"{path}: no such file or folder. Check the path, or use a built-in dataset ({', '.join(BUILTINS)})."
        )
    if path.is_dir():
        say(f"reading the saved dataset in {path} ...")
        try:
            loaded = datasets.load_from_disk(str(path), keep_in_memory=True)
        except FileNotFoundError as exc:
            raise DataError(
                f"{path} is a folder but not a dataset saved with save_to_disk; pass a data file "
                f"({', '.join(FILE_FORMATS)}) or such a folder."
            ) from exc
        return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    compressed = suffixes[-1:] == [".gz"]
    suffix = suffixes[0] if compressed and len(suffixes) == 2 else suffixes[-1] if suffixes else ""
    if suffix not in FILE_FORMATS or (compressed and suffix == ".parquet"):
        shown = "".join(suffixes[-2:] if compressed else suffixes[-1:]) or "(none)"
        raise DataError(
            f"{path}: unsupported file type {shown}; save the data as CSV, TSV, JSON, JSONL or Parquet "
            "(a .gz on the text formats is fine)."
        )
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty; pass a file with a header row and at least a few labelled rows.")
    fmt = FILE_FORMATS[suffix]
    if fmt != "parquet":
        _check_utf8(path, compressed)
    kwargs: dict[str, Any] = {}
    if fmt == "csv":
        # utf-8-sig: a byte-order mark (Excel writes one) would otherwise become part of a column name
        kwargs = {"encoding": "utf-8-sig", "delimiter": "\t" if suffix == ".tsv" else ","}
    say(f"reading {path} ...")
    with tempfile.TemporaryDirectory(prefix="greenladder-data-") as cache, _quiet_datasets():
        try:
            loaded = datasets.load_dataset(
                fmt, data_files=str(path), split="train", cache_dir=cache, keep_in_memory=True, **kwargs
            )
        except ValueError as exc:
            if "corresponds to no data" not in str(exc):  # what datasets says for a header-only file
                raise _unreadable(path, suffix, exc) from exc
            loaded = None
        except Exception as exc:  # the parsers raise many types; all mean "this file is malformed"
            raise _unreadable(path, suffix, exc) from exc
    if loaded is None or loaded.num_rows == 0:
        raise DataError(f"{path} has no data rows; pass a file with a header row and at least a few labelled rows.")
    return datasets.DatasetDict({"train": loaded})


def _unreadable(path: Path, suffix: str, exc: Exception) -> DataError:
    # datasets wraps the parser's error in "An error occurred while generating the dataset"; the parser's says what
    cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
    detail = str(cause).strip().splitlines()[-1:] or [type(cause).__name__]
    return DataError(
        f"{path} could not be read as {suffix.lstrip('.').upper()} ({detail[0][:200]}); check that it is valid."
    )


def _check_utf8(path: Path, compressed: bool) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # where the bytes the decoder is looking at start in the file
    opener = gzip.open if compressed else open
    with opener(path, "rb") as fh:
        try:
            read = 0
            for block in iter(lambda: fh.read(1 << 20), b""):
                offset = read - len(decoder.getstate()[0])  # a character may straddle two blocks
                decoder.decode(block)
                read += len(block)
            offset = read - len(decoder.getstate()[0])
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            at = offset + exc.start
            raise DataError(
                f"{path} is not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {at} is not valid); "
                "re-save it as UTF-8, e.g. `iconv -f cp1252 -t utf-8 in.csv > out.csv`."
            ) from exc
        except (OSError, EOFError) as exc:  # a .gz that is not gzip, or truncated
            raise DataError(f"{path} could not be decompressed ({exc}); check that it is a valid .gz file.") from exc


def _read_hub(source: str, say: Callable[[str], None]) -> datasets.DatasetDict:
    close = difflib.get_close_matches(source, list(BUILTINS), n=1)
    hint = f" (did you mean the built-in {close[0]!r}?)" if close else ""
    unreachable = f"{source!r} is not a file or built-in, and the hub is unreachable{hint}; download the data and pass --data path/to/file.csv."
    if any(
        os.environ.get(v, "").upper() in {"1", "ON", "YES", "TRUE"} for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    ):
        raise DataError(unreachable)
    say(f"loading {source!r} from the Hugging Face hub ...")
    try:
        loaded = datasets.load_dataset(source)
    except datasets.exceptions.DatasetNotFoundError as exc:
        raise DataError(
            f"{source!r} is not a file, a built-in ({', '.join(BUILTINS)}) or a dataset on the hub{hint}; check the name."
        ) from exc
    except (ConnectionError, TimeoutError) as exc:
        raise DataError(unreachable) from exc
    except Exception as exc:  # scripts, configs and gated repos fail in many ways; say which
        raise DataError(f"the hub dataset {source!r} could not be loaded ({str(exc)[:200]}).") from exc
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Hide ``datasets``' progress bars while we read (library code does not print), then restore them."""
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


# --- columns ---------------------------------------------------------------------------------


def _named_splits(raw: datasets.DatasetDict, where: str) -> dict[str, datasets.Dataset]:
    named: dict[str, datasets.Dataset] = {}
    for name, split in raw.items():
        ours = SPLIT_NAMES.get(name.lower())
        if ours and ours not in named:
            named[ours] = split
    if "train" not in named:
        if len(raw) != 1:
            raise DataError(
                f"{where}: no train split among {', '.join(raw)}; name one split 'train' (and optionally 'validation', 'test')."
            )
        named["train"] = next(iter(raw.values()))
    return named


def _is_string(feature: Any) -> bool:
    return isinstance(feature, datasets.Value) and feature.dtype in {"string", "large_string"}


def _detect_text_column(split: datasets.Dataset, label_col: str | None, where: str) -> str:
    strings = [c for c, f in split.features.items() if _is_string(f) and c != label_col]
    by_name = {c.lower(): c for c in strings}
    for name in TEXT_NAMES:
        if name in by_name:
            return by_name[name]
    if not strings:
        raise DataError(
            f"{where}: no text column found among {', '.join(split.column_names)}; set data.text_column to the column holding the text."
        )
    sample = split.select(range(min(1000, split.num_rows)))

    def mean_length(name: str) -> float:
        values = [v for v in column(sample, name) if isinstance(v, str)]
        return sum(map(len, values)) / max(1, len(values))

    return max(strings, key=mean_length)


def _detect_label_column(split: datasets.Dataset, text_col: str, where: str) -> str:
    others = [c for c in split.column_names if c != text_col]
    for c in others:
        if isinstance(split.features[c], datasets.ClassLabel):
            return c
    by_name = {c.lower(): c for c in others}
    for name in LABEL_NAMES:
        if name in by_name:
            return by_name[name]
    cardinality = {}
    for c in others:
        values = {v for v in column(split, c) if v is not None and not isinstance(v, (list, dict))}
        if 2 <= len(values) <= min(MAX_DETECTED_CLASSES, split.num_rows // 2):
            cardinality[c] = len(values)
    if not cardinality:
        raise DataError(
            f"{where}: no label column found among {', '.join(split.column_names)}; set data.label_column to the column holding the class."
        )
    return min(cardinality, key=lambda c: cardinality[c])  # first in column order on ties


def _require_column(splits: dict[str, datasets.Dataset], column: str, key: str, where: str) -> None:
    for name, split in splits.items():
        if column not in split.column_names:
            close = difflib.get_close_matches(column, split.column_names, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            in_split = f" (in the {name} split)" if len(splits) > 1 else ""
            raise DataError(
                f"{where}: no column {column!r}{in_split}; the columns are {', '.join(split.column_names)}. "
                f"{hint}Set data.{key} to one of them."
            )


def _extract(
    split: datasets.Dataset, text_col: str, label_col: str, name: str, where: str
) -> tuple[list[str], list[str]]:
    """Texts and label names of one split; refuse empty texts and missing labels."""
    texts = column(split, text_col)
    labels = column(split, label_col)
    feature = split.features[label_col]
    if isinstance(feature, datasets.ClassLabel):
        # hub test splits often carry -1 for "no label"
        labels = [feature.int2str(v) if v is not None and v >= 0 else None for v in labels]
    named = [_label_name(v) for v in labels]
    missing = sum(v is None for v in named)
    if missing:
        raise DataError(
            f"{where}: {missing} of {len(named)} rows{_in(name)} have an empty or missing label in column "
            f"{label_col!r}; fill them in or drop those rows."
        )
    empty = sum(t is None or (isinstance(t, str) and not t.strip()) for t in texts)
    if empty:
        raise DataError(
            f"{where}: {empty} of {len(texts)} rows{_in(name)} have an empty text in column {text_col!r}; drop those rows."
        )
    return [t if isinstance(t, str) else str(t) for t in texts], [v for v in named if v is not None]


def _in(split: str) -> str:
    return f" of the {split} split" if split != "train" else ""


def _label_name(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    name = str(value).strip()
    return name or None


def _label_names(labels: Sequence[str], label_col: str, where: str) -> tuple[str, ...]:
    counts = Counter(labels)
    if len(counts) < 2:
        only = next(iter(counts), "")
        raise DataError(
            f"{where}: column {label_col!r} holds a single class ({only!r}, {counts[only]} rows); a classifier needs "
            "at least two. Check data.label_column or add examples of the other classes."
        )
    names = list(counts)
    if all(n.lstrip("-").isdigit() for n in names):
        return tuple(sorted(names, key=int))
    return tuple(sorted(names))


# --- duplicates and splits -------------------------------------------------------------------


def _dedup(texts: list[str], labels: list[str]) -> tuple[tuple[list[str], list[str]], int, int]:
    """Keep the first row of each exact text; return the rows, how many were dropped, how many conflicted."""
    first: dict[str, str] = {}
    conflicting: set[str] = set()
    for text, label in zip(texts, labels, strict=True):
        if text not in first:
            first[text] = label
        elif first[text] != label:
            conflicting.add(text)
    return (list(first), list(first.values())), len(texts) - len(first), len(conflicting)


def _min_class_rows(fractions: Sequence[float]) -> int:
    """Fewest rows a class needs so that each stratified cut, taken in turn, gets at least one and leaves one.

    scikit-learn allocates each class at least floor(share x rows) to a held-out part, so we
    simulate the cuts with the worst-case rounding (ceil when taking away, floor when checking).
    """
    for rows in range(2, 10_000):
        left, remaining_share, ok = rows, 1.0, True
        for fraction in fractions:
            share = fraction / remaining_share
            if math.floor(left * share) < 1:
                ok = False
                break
            left -= math.ceil(left * share)
            remaining_share -= fraction
        if ok and left >= 1:
            return rows
    return 10_000


def _carve_missing_splits(
    rows: dict[str, tuple[list[str], list[str]]],
    label_names: tuple[str, ...],
    cfg: DataConfig,
    where: str,
    validation_fraction: float,
) -> dict[str, tuple[list[str], list[str]]]:
    """Take the missing validation and/or test splits out of train, stratified, with the fixed seed.

    When both are missing each fraction is a share of all rows; when one is, a share of train.
    """
    wanted = [(name, fraction) for name, fraction in (("test", cfg.test_fraction), ("validation", validation_fraction))]
    wanted = [(name, f) for name, f in wanted if name not in rows]
    if not wanted:
        return rows
    texts, labels = rows["train"]
    minimum = _min_class_rows([f for _, f in wanted])
    counts = Counter(labels)
    small = [(name, counts[name]) for name in label_names if 0 < counts[name] < minimum]
    if small:
        name, count = min(small, key=lambda item: item[1])
        cut = " and ".join(f"{n}_fraction={f}" for n, f in wanted)
        raise DataError(
            f"{where}: class {name!r} has only {count} rows; the stratified split ({cut}) needs at least {minimum} per class. "
            "Add examples of it, drop it, or provide your own train/validation/test splits."
        )
    out = dict(rows)
    pool = np.arange(len(texts))
    remaining_share = 1.0
    for name, fraction in wanted:
        pool_labels = [labels[i] for i in pool]
        keep, held = train_test_split(
            pool, test_size=fraction / remaining_share, stratify=pool_labels, random_state=cfg.split_seed
        )
        held = np.sort(held)
        out[name] = ([texts[i] for i in held], [labels[i] for i in held])
        pool = np.sort(keep)
        remaining_share -= fraction
    out["train"] = ([texts[i] for i in pool], [labels[i] for i in pool])
    return out
