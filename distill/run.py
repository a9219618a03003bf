"""``distill(config)``: load the data and the teacher, run the pipeline under the output folder's
lock and ledger, deliver the student (float and int8) with its model card, judge it against the
criteria, and write the reports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from advisor.data.task import TaskData, column, load_task_data
from advisor.errors import ModelError
from advisor.store.ledger import Ledger, locked
from advisor.types import Footprint
from advisor.verdicts.criteria import validate_metric_name
from distill.compress import INT8_WEIGHTS, export_onnx, onnx_latency
from distill.config import DistillConfig
from distill.fingerprint import canonical_order, fingerprint
from distill.folder import STUDENT, deliver, tree_bytes
from distill.pipeline import Progress, distill_models
from distill.records import Runs, move_aside, open_ledger
from distill.report import model_card, write_reports
from distill.students import resolve_source
from distill.summary import DistillReport
from distill.teacher import load_teacher
from distill.transfer import read_unlabeled
from distill.verdict import has_criteria, judge_form, per_unit


def _weights_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 1e6


def distill(config: DistillConfig, progress: Progress | None = None, *, restart: bool = False) -> DistillReport:
    """Distil ``config.teacher`` into a student on ``config.data``; deliver it in ``<out>/student``.

    Running the same command again reads every finished run back from ``<out>/ledger.sqlite``.
    ``restart`` moves a used output folder aside (``<out>.old-<n>``) and starts afresh.

    Raises:
        ModelError: the teacher's labels do not match the data's by name; it has no head and
            fine-tuning it was refused; pickled weights without ``allow_pickle``.
        DataError, ConfigError: from loading the data or the unlabelled texts; a metric the labels
            do not allow.
        RunDirError: the output folder is in use, or holds a distillation of other data, models or
            settings (the message names what changed).
    """
    say = progress or (lambda _m: None)
    data = canonical_order(load_task_data(config.data, progress=say))
    validate_metric_name(config.criteria.metric, len(data.label_names))
    unlabeled = read_unlabeled(config.unlabeled, config.data.text_column) if config.unlabeled else []
    label_names = tuple(data.label_names)
    source = resolve_source(config.teacher, config.allow_pickle, say)
    checkpoint = config.student.checkpoint
    student_source = resolve_source(checkpoint, config.allow_pickle, say) if checkpoint else None
    parts = fingerprint(config, data, source, student_source, unlabeled)
    out = Path(config.out)
    if restart and out.exists() and any(out.iterdir()):
        say(f"--restart: moved the earlier output folder aside to {move_aside(out)}")
    out.mkdir(parents=True, exist_ok=True)
    with locked(out), open_ledger(out, parts) as ledger:
        tuned = out / "teacher"
        teacher, tokenizer, needs_finetune = _teacher(ledger, tuned, source, label_names, config)
        report, student, student_tok = distill_models(
            teacher,
            tokenizer,
            data,
            config,
            work_dir=out,
            teacher_needs_finetune=needs_finetune,
            unlabeled=unlabeled,
            ledger=ledger,
            progress=say,
            score_test=True,
        )
        folder = deliver(Runs(ledger, say), out, report, config.keep_control)
    student_dir = out / STUDENT
    extra: dict[str, Any] = {"folder": folder}
    sizes = dict(report.summary.get("size_mb", {}))
    if report.quantized is not None:
        extra["student_int8"] = str(student_dir / INT8_WEIGHTS)
    if needs_finetune or tuned.is_dir():
        extra["teacher_dir"] = str(tuned)
        sizes["teacher_on_disk"] = _weights_mb(tuned)
    elif Path(source).is_dir():
        sizes["teacher_on_disk"] = _weights_mb(Path(source))
    sizes["student_weights_on_disk"] = _weights_mb(student_dir)
    latency = dict(report.latency)
    if config.compress.onnx:
        extra.update(_onnx(student, student_tok, out, data, config, latency))
    forms = _forms(report, student_dir, latency)
    sizes["student_on_disk"] = forms["student"].size_mb
    extra["gain_per_unit"] = (
        per_unit(report.summary["gain_over_control"], report.total_cost)
        if report.summary["gain_over_control"]
        else None
    )
    extra["verdicts"] = _verdicts(report, config, data, forms)
    report = dataclasses.replace(
        report, student_dir=str(student_dir), latency=latency, summary={**report.summary, **extra, "size_mb": sizes}
    )
    (student_dir / "README.md").write_text(model_card(report, label_names), encoding="utf-8")
    write_reports(report, out)
    return report


def _teacher(
    ledger: Ledger, tuned: Path, source: str, label_names: tuple[str, ...], config: DistillConfig
) -> tuple[Any, Any, bool]:
    """The teacher, its tokenizer and whether it still needs fine-tuning: the fine-tune in ``tuned``
    once the ledger holds it, else the checkpoint at ``source``.

    Raises:
        ModelError: it has no head for these labels and ``config.finetune_teacher`` is off.
    """
    teacher_run = ledger.finished("teacher")
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
    return teacher, tokenizer, needs_finetune


def _forms(
    report: DistillReport, student_dir: Path, latency: Mapping[str, Mapping[str, float]]
) -> dict[str, Footprint]:
    """What each delivered form costs to keep and serve: the float student's folder without the int8
    file; the int8 file with the folder's config and tokenizer files (what loading it needs)."""
    files = [p for p in student_dir.iterdir() if p.is_file() and p.name != "README.md"]
    params = report.delivered.candidate.params_total
    shipped = {
        "student": [p for p in files if p.name != INT8_WEIGHTS],
        "student_int8": [p for p in files if p.suffix != ".safetensors"],
    }
    out = {}
    for name in ("student", *(["student_int8"] if report.quantized is not None else [])):
        lat = latency.get(name, {})
        size = sum(tree_bytes(p) for p in shipped[name]) / 1e6
        out[name] = Footprint(size, lat.get("latency_ms_p50"), lat.get("latency_ms_p95"), params, "cpu")
    return out


def _verdicts(
    report: DistillReport, config: DistillConfig, data: TaskData, forms: Mapping[str, Footprint]
) -> dict[str, Any] | None:
    """Each delivered form judged against the criteria on the validation rows (None: no criteria set)."""
    if not has_criteria(config.criteria):
        return None
    labels = column(data.validation, "label")
    teacher = report.teacher.metrics.get(config.criteria.metric)
    runs = {"student": report.delivered, "student_int8": report.quantized}
    return {
        name: judge_form(run, config.criteria, teacher, forms[name], labels, len(data.label_names))
        for name, run in runs.items()
        if run is not None and name in forms
    }


def _onnx(
    student: Any, student_tok: Any, out: Path, data: TaskData, config: DistillConfig, latency: dict[str, Any]
) -> dict[str, Any]:
    """Export the student to ONNX and time it (on the latency's validation texts); failures are reported."""
    extra: dict[str, Any] = {}
    try:
        path = export_onnx(student, student_tok, out / "student.onnx", max_length=config.distill.max_length)
        extra["onnx"] = str(path)
        texts = column(data.validation, "text")[:64]
        timed = onnx_latency(path, student_tok, texts, config.distill.max_length, config.compress.latency_repeats)
        if timed is not None:
            latency["student_onnx"] = timed
            extra["speedup_p50_student_onnx"] = latency["teacher"]["latency_ms_p50"] / timed["latency_ms_p50"]
        else:
            extra["onnx_latency"] = "not measured: onnxruntime is not installed (pip install onnxruntime)"
    except ModelError as exc:  # the student is trained and saved; report the export failure, do not lose it
        extra["onnx"] = f"failed: {exc}"
    return extra
