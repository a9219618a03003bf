"""Load a text-classification dataset, check it, and split it: the first step of every climb.

``load_task_data`` accepts a built-in name (see :mod:`advisor.offline.builtin_data`), a CSV/TSV/JSON/
JSONL/Parquet file (optionally gzipped), a folder written by ``datasets``' ``save_to_disk``, or a
hub id (online only). Whatever the source, the result is a :class:`TaskData`: train, validation
and test splits with columns ``text`` (str) and ``label`` (int 0..K-1, labels sorted by name).

Bad data fails early with one :class:`~advisor.errors.DataError` naming the problem and the fix,
before anything is written: files are read through ``datasets`` into memory with a throwaway
cache folder, so a failed load leaves no cache behind.
"""

from __future__ import annotations

import difflib
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np

from advisor.config.settings import DataConfig
from advisor.data.readers import read_source
from advisor.data.splitting import carve_missing_splits, validation_share
from advisor.errors import DataError

Progress = Callable[[str], None] | None

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


def load_task_data(cfg: DataConfig, progress: Progress = None, validation_rows: int | None = None) -> TaskData:
    """Load, check, deduplicate and split the dataset named by ``cfg.source``.

    Given train/validation/test splits are kept; missing ones are carved out of train (or out of
    the whole data) by a stratified split with ``cfg.split_seed``, so reruns see the same rows.

    Raises:
        DataError: the source cannot be found or read, a column is missing, labels or texts are
            empty, there is a single class, or a class is too small for the split.
    """
    say = progress or (lambda _msg: None)
    raw, where, source = read_source(cfg.source, say)
    splits = _named_splits(raw, where)
    text_col, label_col = _columns(splits, cfg, where)
    rows = {name: _extract(split, text_col, label_col, name, where) for name, split in splits.items()}
    rows, removed, warnings = _deduplicated(rows)
    label_names = _label_names([label for _, labels in rows.values() for label in labels], label_col, where)
    cross, overlaps = _overlap_warnings(rows)
    warnings += overlaps
    total = sum(len(texts) for texts, _ in rows.values())
    share = validation_share(cfg, total, validation_rows)
    rows = carve_missing_splits(rows, label_names, cfg, where, share)
    if validation_rows and len(rows["validation"][0]) < validation_rows:
        warnings.append(
            f"the validation split has {len(rows['validation'][0])} rows, fewer than the {validation_rows} that an "
            f"interval of +-{cfg.validation_margin:g} near the floor needs: models that close to the floor will be "
            "undecided (more labelled rows, a wider data.validation_margin or a lower criteria.confidence decide more)"
        )
    built = _to_datasets(rows, label_names)
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


#: split name -> (texts, label names)
Rows = dict[str, tuple[list[str], list[str]]]


def _columns(splits: dict[str, datasets.Dataset], cfg: DataConfig, where: str) -> tuple[str, str]:
    """The text and label columns: as configured, else detected on the train split; both must exist."""
    first = splits["train"]
    text_col = cfg.text_column if cfg.text_column is not None else _detect_text_column(first, cfg.label_column, where)
    _require_column(splits, text_col, "text_column", where)
    label_col = cfg.label_column if cfg.label_column is not None else _detect_label_column(first, text_col, where)
    _require_column(splits, label_col, "label_column", where)
    if text_col == label_col:
        raise DataError(
            f"{where}: text and label are both column {text_col!r}; set data.text_column and data.label_column."
        )
    return text_col, label_col


def _deduplicated(rows: Rows) -> tuple[Rows, int, list[str]]:
    """Each split without duplicate texts; how many rows were removed, and a warning per split whose
    duplicates had different labels."""
    out: Rows = {}
    warnings: list[str] = []
    removed = 0
    for name, (texts, labels) in rows.items():
        out[name], dropped, conflicting = _dedup(texts, labels)
        removed += dropped
        if conflicting:
            warnings.append(
                f"{conflicting} duplicate texts in {name} had different labels; kept the first label of each"
            )
    return out, removed, warnings


def _overlap_warnings(rows: Rows) -> tuple[int, list[str]]:
    """Texts of the test split also in train (their count), and warnings for texts shared between
    splits and for classes of validation or test that train never shows."""
    warnings: list[str] = []
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
    return cross, warnings


def _to_datasets(rows: Rows, label_names: tuple[str, ...]) -> dict[str, datasets.Dataset]:
    """Each split as a ``datasets.Dataset`` of ``text`` and a ``label`` ClassLabel over ``label_names``."""
    index = {name: i for i, name in enumerate(label_names)}
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(label_names))}
    )
    return {
        name: datasets.Dataset.from_dict({"text": texts, "label": [index[x] for x in labels]}, features=features)
        for name, (texts, labels) in rows.items()
    }


def column(split: datasets.Dataset, name: str) -> list[Any]:
    """One column as a Python list, in one Arrow conversion (row-by-row access is ~100x slower)."""
    return split.with_format("arrow")[name].to_pylist()


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
    """Keep the first row of each exact text; return the rows, how many were dropped, how many conflicted.

    The rows come back sorted by text: a canonical order, so that the carved splits and the order
    of training depend on the rows' content, not on the order of the file. A reordered file is then
    the same data, and a run directory made from it is reused (:mod:`advisor.store.rundir`).
    """
    first: dict[str, str] = {}
    conflicting: set[str] = set()
    for text, label in zip(texts, labels, strict=True):
        if text not in first:
            first[text] = label
        elif first[text] != label:
            conflicting.add(text)
    ordered = sorted(first)
    return (ordered, [first[t] for t in ordered]), len(texts) - len(first), len(conflicting)
