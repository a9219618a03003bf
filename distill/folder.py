"""What the output folder keeps: each model once.

Training leaves one model folder per control and per distilled student under ``runs/`` and the
int8 file under ``runs/student-int8/``. Delivering the student *moves* the chosen one into
``student/`` (and the int8 file beside it), then deletes every model that was not delivered, the
controls' included unless ``keep_control`` asks for them. Where each model went is written to the
ledger before it moves, so a run killed half-way finds it on the next call; the bytes deleted are
recorded, so the report can say how much space the cleanup freed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distill.compress import INT8_WEIGHTS
from distill.records import Runs
from distill.summary import DistillReport

STUDENT = "student"


def tree_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _move(runs: Runs, out: Path, artifact: str, dest: str) -> None:
    """Move ``out/artifact`` to ``out/dest``, recording the move first (idempotent)."""
    moved = dict(runs.meta("moved") or {})
    if moved.get(artifact) != dest:
        moved[artifact] = dest
        runs.set_meta("moved", moved)
    source, target = out / artifact, out / dest
    if source.exists():
        if target.is_dir():  # a copy an earlier version left there
            shutil.rmtree(target)
        os.replace(source, target)


def _not_delivered(report: DistillReport, keep_control: bool) -> list[str]:
    runs = [*report.students, *([] if keep_control else report.controls)]
    return [str(r.artifact) for r in runs if r.run_id != report.saved_run and r.artifact]


def deliver(runs: Runs, out: Path, report: DistillReport, keep_control: bool) -> dict[str, Any]:
    """Move the saved student (and its int8 file) into ``out/student``, delete the other models.

    Returns:
        ``{"student": folder, "deleted": [paths], "freed_mb": MB freed by this and earlier calls,
        "kept": [paths of every model left]}``.
    """
    saved = report.delivered
    _move(runs, out, str(saved.artifact), STUDENT)
    if report.quantized is not None and report.quantized.artifact:
        _move(runs, out, report.quantized.artifact, f"{STUDENT}/{INT8_WEIGHTS}")
    freed = list(runs.meta("freed") or [])
    for artifact in _not_delivered(report, keep_control):
        path = out / artifact
        if not path.exists():
            continue
        if artifact not in {f["path"] for f in freed}:  # recorded before the delete, once
            freed.append({"path": artifact, "bytes": tree_bytes(path)})
            runs.set_meta("freed", freed)
        shutil.rmtree(path)
    for folder in ("runs", "inprogress", ".scratch"):
        _prune_empty(out / folder)
    kept = [str(p.relative_to(out)) for p in _models(out)]
    return {
        "student": str(out / STUDENT),
        "deleted": [f["path"] for f in freed],
        "freed_mb": sum(f["bytes"] for f in freed) / 1e6,
        "kept": kept,
    }


def _prune_empty(folder: Path) -> None:
    """Remove ``folder`` and the folders under it that a move or delete left empty."""
    if not folder.is_dir():
        return
    for path in [*sorted(folder.rglob("*"), key=lambda p: -len(p.parts)), folder]:
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _models(out: Path, suffixes: Sequence[str] = (".safetensors", ".bin", ".pt", ".onnx")) -> list[Path]:
    """Every weights file under ``out`` (the teacher-logit cache is not a model)."""
    return sorted(p for p in out.rglob("*") if p.is_file() and p.suffix in suffixes and "teacher_logits" not in p.parts)
