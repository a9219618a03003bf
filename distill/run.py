"""``distill(config)``: load the data and the teacher, run the pipeline under the output folder's
lock and ledger, save the student (float and int8) with its model card, and write the reports.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from advisor.data import load_task_data
from advisor.errors import ModelError
from advisor.ledger import locked
from advisor.train import save_model_folder
from distill.compress import INT8_WEIGHTS, export_onnx, onnx_latency
from distill.config import DistillConfig
from distill.pipeline import Progress, distill_models, resolve_source
from distill.records import open_ledger
from distill.report import model_card, write_reports
from distill.summary import DistillReport
from distill.teacher import load_teacher
from distill.transfer import read_unlabeled


def _weights_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 1e6


def distill(config: DistillConfig, progress: Progress | None = None) -> DistillReport:
    """Distil ``config.teacher`` into a student on ``config.data``; save it under ``<out>/student``.

    Running the same command again reads every finished run back from ``<out>/ledger.sqlite``.

    Raises:
        ModelError: the teacher's labels do not match the data's by name; it has no head and
            fine-tuning it was refused; pickled weights without ``allow_pickle``.
        DataError, ConfigError: from loading the data or the unlabelled texts.
        RunDirError: the output folder is in use, or holds a distillation with other settings.
    """
    say = progress or (lambda _m: None)
    data = load_task_data(config.data, progress=say)
    unlabeled = read_unlabeled(config.unlabeled, config.data.text_column) if config.unlabeled else []
    label_names = tuple(data.label_names)
    source = resolve_source(config.teacher, config.allow_pickle, say)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    with locked(out), open_ledger(out, config) as ledger:
        teacher_run = ledger.finished("teacher")
        tuned = out / "teacher"
        if teacher_run is not None and teacher_run.details.get("fine_tuned_here") and tuned.is_dir():
            # the fine-tune is in the ledger: its result, not the original checkpoint, is the teacher
            teacher, tokenizer, needs_finetune = load_teacher(str(tuned), label_names)
        else:
            teacher, tokenizer, needs_finetune = load_teacher(
                source, label_names, allow_pickle=config.allow_pickle, seed=config.teacher_train.seed
            )
        if needs_finetune and not config.finetune_teacher:
            raise ModelError(
                f"The teacher {config.teacher} has no classification head for the labels {list(label_names)}, and "
                "fine-tuning it was turned off (--no-finetune-teacher). Pass a teacher fine-tuned on these labels, "
                "or drop --no-finetune-teacher to fine-tune it first (its cost is reported)."
            )
        report, student, student_tok = distill_models(
            teacher, tokenizer, data, config, work_dir=out, teacher_needs_finetune=needs_finetune,
            unlabeled=unlabeled, ledger=ledger, progress=say,
        )  # fmt: skip
    student_dir = out / "student"
    save_model_folder(student, student_tok, student_dir)
    extra: dict[str, Any] = {}
    sizes = dict(report.summary.get("size_mb", {}))
    if report.quantized is not None and report.quantized.artifact:
        shutil.copyfile(out / report.quantized.artifact, student_dir / INT8_WEIGHTS)
        extra["student_int8"] = str(student_dir / INT8_WEIGHTS)
    if needs_finetune or tuned.is_dir():
        extra["teacher_dir"] = str(tuned)
        sizes["teacher_on_disk"] = _weights_mb(tuned)
    elif Path(source).is_dir():
        sizes["teacher_on_disk"] = _weights_mb(Path(source))
    sizes["student_weights_on_disk"] = _weights_mb(student_dir)
    latency = dict(report.latency)
    if config.compress.onnx:
        try:
            path = export_onnx(student, student_tok, out / "student.onnx", max_length=config.distill.max_length)
            extra["onnx"] = str(path)
            texts = list(data.test["text"])[:64]
            timed = onnx_latency(path, student_tok, texts, config.distill.max_length, config.compress.latency_repeats)
            if timed is not None:
                latency["student_onnx"] = timed
                extra["speedup_p50_student_onnx"] = latency["teacher"]["latency_ms_p50"] / timed["latency_ms_p50"]
            else:
                extra["onnx_latency"] = "not measured: onnxruntime is not installed (pip install onnxruntime)"
        except ModelError as exc:  # the student is trained and saved; report the export failure, do not lose it
            extra["onnx"] = f"failed: {exc}"
    report = dataclasses.replace(
        report, student_dir=str(student_dir), latency=latency, summary={**report.summary, **extra, "size_mb": sizes}
    )
    (student_dir / "README.md").write_text(model_card(report, label_names), encoding="utf-8")
    write_reports(report, out)
    return report
