"""What an output folder's records were made from: the data's content, the models' files, the settings.

A distillation's output folder is read back on the next run only when all of these match. The
data is digested as read (after deduplication and splitting), split by split, as the set of its
rows: the same rows in another order give the same digest, and :func:`canonical_order` puts each
split in one fixed order before anything trains, so such a file also gives the same runs. A data
file without its own splits is split by row position, so reordering *its* rows moves rows between
train, validation and test: that is a change ("the rows of the validation split"), and it is
reported as one. A mismatch is named by its cause: "the data's labels" when labels changed, even
though the stratified split then also put other rows in each split.

Models are digested by content (SHA-256 of every file in the folder but README.md), not by path
or modification time: a teacher of 440 MB hashes in about a second, small beside a distillation,
and a copy of the same weights elsewhere is recognised. A hub id that is not a local folder is
recorded by its name only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from distill.config import DistillConfig

#: settings that do not change a recorded run (where things go, how they are measured, what is
#: kept or judged afterwards) or whose content is digested instead of their path
_NOT_RECORDED = (
    "out",
    "cache_dir",
    "compress",
    "metering",
    "criteria",
    "keep_control",
    "allow_pickle",
    "finetune_teacher",
    "teacher",
    "unlabeled",
    "data.source",
    "student.checkpoint",
)
_SPLITS = ("train", "validation", "test")
POOLED_TEXTS, POOLED_LABELS = "the data's texts", "the data's labels"


def _row_digest(parts: Iterable[str]) -> bytes:
    from distill.teacher import texts_digest  # one length-prefixed digest of strings for both

    return bytes.fromhex(texts_digest(list(parts)))


def set_digest(rows: Iterable[Sequence[str]]) -> str:
    """SHA-256 of a multiset of rows (each a tuple of strings): order-insensitive, boundary-safe."""
    digest = hashlib.sha256()
    for row in sorted(_row_digest(r) for r in rows):
        digest.update(row)
    return digest.hexdigest()


def canonical_order(data: Any) -> Any:
    """``data`` (an ``advisor.data.task.TaskData``) with each split's rows sorted by a hash of their text,
    so the order of rows in a file changes nothing downstream. Texts are unique within a split."""
    splits = {}
    for name in _SPLITS:
        split = getattr(data, name)
        texts = split.with_format("arrow")["text"].to_pylist()
        order = sorted(range(len(texts)), key=lambda i: hashlib.sha256(texts[i].encode("utf-8")).digest())
        splits[name] = split.select(order)
    return dataclasses.replace(data, **splits)


def data_parts(data: Any) -> dict[str, str]:
    """Digests of the data's texts and of its (text, label name) rows over all splits, then of each
    split's rows (which rows it holds)."""
    names = list(data.label_names)
    rows: dict[str, list[tuple[str, str]]] = {}
    for split in _SPLITS:
        arrow = getattr(data, split).with_format("arrow")
        texts, labels = arrow["text"].to_pylist(), arrow["label"].to_pylist()
        rows[split] = [(t, names[int(y)]) for t, y in zip(texts, labels, strict=True)]
    pooled = [r for split in _SPLITS for r in rows[split]]
    out = {POOLED_TEXTS: set_digest((t,) for t, _ in pooled), POOLED_LABELS: set_digest(pooled)}
    out.update({f"the rows of the {split} split": set_digest(rows[split]) for split in _SPLITS})
    return out


def folder_digest(source: str | Path) -> str:
    """SHA-256 over the files of a model folder (names, sizes, bytes; README.md left out), or
    ``id:<source>`` for what is not a local folder (a hub id)."""
    folder = Path(source).expanduser()
    if not folder.is_dir():
        return f"id:{source}"
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name != "README.md"):
        digest.update(f"{path.name}|{path.stat().st_size}|".encode())
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def settings_parts(config: DistillConfig) -> dict[str, str]:
    """Every setting that changes a recorded run, as ``"setting <key>" -> its value (JSON)``."""
    flat = _flatten(config.to_dict())
    return {
        f"setting {key}": json.dumps(value, sort_keys=True, default=str)
        for key, value in flat.items()
        if not any(key == skip or key.startswith(f"{skip}.") for skip in _NOT_RECORDED)
    }


def fingerprint(
    config: DistillConfig,
    data: Any,
    teacher_source: str,
    student_source: str | None = None,
    unlabeled: Sequence[str] = (),
) -> dict[str, str]:
    """What the folder's records were made from: part name -> digest or value."""
    parts = data_parts(data)
    parts["the teacher's files"] = folder_digest(teacher_source)
    if student_source is not None:
        parts["the student checkpoint's files"] = folder_digest(student_source)
    parts["the unlabelled texts"] = set_digest((t,) for t in unlabeled)
    parts.update(settings_parts(config))
    return parts


def what_changed(recorded: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """The parts that differ, in the order of ``now``, naming the cause rather than its effects:
    changed texts, not the labels and splits that changed with them; changed labels, not the
    splits they moved rows between (a stratified split follows the labels)."""
    changed = [name for name in dict.fromkeys([*now, *recorded]) if recorded.get(name) != now.get(name)]
    if POOLED_TEXTS in changed or POOLED_LABELS in changed:
        derived = {POOLED_LABELS} if POOLED_TEXTS in changed else set()
        changed = [n for n in changed if n not in derived and not n.startswith("the rows of the")]
    return changed
