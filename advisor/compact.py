"""When a rung is good enough but too big or too slow, distil it into a student and judge that.

A rung that meets the metric floor and fails only ceilings (p95 latency, size on disk,
parameters) will not be rescued by a larger rung: larger rungs are slower and bigger still. So
the climb stops there and, unless turned off (``ladder.distil_on_ceiling``), distils that run
into a half-depth student initialised from its layers (``distill``'s pipeline, without the
no-teacher control to keep the cost down) and judges the student like any rung.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from advisor.baseline import latency_ms
from advisor.config import Config
from advisor.cost import Meter
from advisor.data import TaskData, column
from advisor.types import Candidate, RunResult, Verdict

#: criteria a smaller model can fix; failing only these makes a run a teacher for distillation
CEILINGS = frozenset({"max_latency_ms", "max_size_mb", "max_params"})


def only_ceilings_failed(verdict: Verdict) -> bool:
    """True when the run met the floor and failed nothing but ceilings."""
    return not verdict.passed and bool(verdict.failed) and set(verdict.failed) <= CEILINGS


def distil_run(
    teacher_run: RunResult,
    data: TaskData,
    config: Config,
    run_dir: Path,
    run_id: str,
    progress: Callable[[str], None] | None = None,
) -> RunResult:
    """Distil ``teacher_run``'s saved model into a half-depth student; return the student's RunResult.

    The cost covers the teacher's evaluation and logit caching, the distillation and the latency
    measurement; the student is saved under ``runs/<run_id>/model``.
    """
    from advisor.models import count_parameters, load_for_classification
    from advisor.train import dir_size_mb, predict_labels, quiet_libraries, save_model_folder
    from distill.config import build_distill_config
    from distill.pipeline import distill_models

    say = progress or (lambda _m: None)
    teacher_dir = run_dir / str(teacher_run.artifact)
    out = run_dir / "runs" / run_id
    t = config.train
    hp = teacher_run.hyperparameters
    dcfg = build_distill_config(
        extra={
            "teacher": str(teacher_dir),
            "out": str(out),
            "cache_dir": str(run_dir / "cache"),
            "data": dataclasses.asdict(config.data),
            "metering": dataclasses.asdict(config.metering),
            "distill": {
                "epochs": float(hp.get("epochs", t.epochs)),
                "learning_rate": float(hp.get("learning_rate", t.learning_rate)),
                "batch_size": t.batch_size,
                "max_length": t.max_length,
                "seeds": [t.seed],
                "control": False,  # the advisor needs the student; `distill` itself runs the control
            },
            "compress": {"quantize": False},
        }
    )
    say(f"{run_id}: distilling {teacher_run.run_id} into a half-depth student (it met the floor but not a ceiling)")
    with quiet_libraries():
        teacher, tokenizer = load_for_classification(str(teacher_dir), data.label_names)
    report, student = distill_models(teacher, tokenizer, data, dcfg, progress=say)
    dest = out / "model"
    student.config.id2label = dict(enumerate(data.label_names))
    student.config.label2id = {n: i for i, n in enumerate(data.label_names)}
    save_model_folder(student, tokenizer, dest)
    with Meter(config.metering, phase=f"latency {run_id}") as meter:
        cpu_student = student.to("cpu")
        lat = latency_ms(
            lambda b: predict_labels(cpu_student, tokenizer, b, t.max_length), column(data.validation, "text")
        )
    best = next(r for r in report.students if r.run_id == report.saved_run)
    total, non_emb = count_parameters(student)
    candidate = Candidate(
        name=f"{teacher_run.candidate.name}-student",
        kind="distilled",
        source=str(teacher_dir.relative_to(run_dir)),
        params_total=total,
        params_non_embedding=non_emb,
        layers=getattr(student.config, "num_hidden_layers", None),
        hidden=getattr(student.config, "hidden_size", None),
        parent_run=teacher_run.run_id,
    )
    return RunResult(
        run_id=run_id,
        candidate=candidate,
        hyperparameters=dict(best.hyperparameters),
        status="ok",
        metrics=dict(best.metrics),
        cost=report.total_cost + meter.cost,
        artifact=str(dest.relative_to(run_dir)),
        details={
            "size_mb": dir_size_mb(dest),
            **lat,
            "teacher_run": teacher_run.run_id,
            "retention": report.summary.get("retention"),
            "distill_phases": {k: v.to_dict() for k, v in report.phases.items()},
        },
    )
