"""The advisor's compaction step: a rung good enough but too big becomes a distilled student.

``distil_run`` is an ``advisor.climb.distiller.Distiller``: the climb hands it the run that met the floor
but failed only ceilings, and judges the RunResult it returns like any rung. The ``advise`` command
and ``advisor.select_model`` hand it to the climb, which never imports ``distill`` itself.
The student keeps half the teacher's layers (every other one). Decide before paying: the same
student trained without the teacher (the control, the cheaper path) is trained first and compared
with the teacher on the same validation rows (``distill.decide``); only when the paired interval
shows the teacher ahead is the distilled student trained, otherwise the control is the student the
climb judges, and its record says why. ``ladder.distil_unlabeled`` adds a transfer set: the
teacher's logits on unlabelled texts from the domain, which the control cannot use.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from advisor.climb.distiller import DistilRequest, unjudged_student
from advisor.data.task import column
from advisor.metering.cost import Meter
from advisor.models.loading import load_for_classification
from advisor.store.ledger import Ledger
from advisor.training.train import dir_size_mb, quiet_libraries, save_model_folder
from advisor.types import Cost, Footprint, RunResult
from distill.compress import model_latency
from distill.config import DistillConfig, build_distill_config
from distill.pipeline import distill_models
from distill.summary import DistillReport
from distill.teacher import PassRefused
from distill.transfer import read_unlabeled


def distil_run(
    request: DistilRequest, progress: Callable[[str], None] | None = None, callbacks: Sequence[Any] = ()
) -> RunResult:
    """Distil the request's teacher run's saved model into a half-depth student; return the student's RunResult.

    The cost covers the teacher's evaluation and logit caching, the distillation and the latency
    measurement; the student is saved under ``runs/<run_id>/model``. ``details["retention"]`` is the
    student's validation metric (the criteria's) over the teacher's. ``callbacks`` (the climb's
    budget watch) go to the student's Trainer: a student it stopped is returned with status
    ``budget``, its partial model judged and saved like any. A teacher pass forecast not to fit is
    not started: the run comes back with status ``budget``, no metrics, and the cost spent before.
    """
    teacher_run, data, config, run_id = request.teacher_run, request.data, request.config, request.run_id
    run_dir = request.run_dir
    say = progress or (lambda _m: None)
    teacher_dir = run_dir / str(teacher_run.artifact)
    source = str(teacher_dir.relative_to(run_dir))  # the student's source: its teacher's model
    work = run_dir / "runs" / run_id
    dcfg = _student_config(request, teacher_dir, work)
    unlabeled_path = config.ladder.distil_unlabeled
    unlabeled = read_unlabeled(unlabeled_path, config.data.text_column) if unlabeled_path else []
    say(f"{run_id}: distilling {teacher_run.run_id} into a half-depth student (it met the floor but not a ceiling)")
    with quiet_libraries():
        teacher, tokenizer = load_for_classification(str(teacher_dir), data.label_names)
    # the phases' own records (control, teacher logits, students) and running costs, under the work
    # folder: a rerun after a kill reads the finished phases back and counts the killed one as lost
    # (the climb's ledger records the student's run; the run directory's fingerprint covers both)
    work.mkdir(parents=True, exist_ok=True)
    try:
        with Ledger(work) as phases:
            report, student, student_tok = distill_models(
                teacher,
                tokenizer,
                data,
                dcfg,
                work_dir=work,
                unlabeled=unlabeled,
                ledger=phases,
                progress=say,
                callbacks=callbacks,
            )
    except PassRefused as refused:  # a teacher pass forecast past the budget: no student to judge
        say(f"{run_id}: stopped: {refused}")
        details = {"teacher_run": teacher_run.run_id, "steps": 0}
        return unjudged_student(teacher_run, request.key, source, "budget", str(refused), refused.spent, details)
    dest = work / "model"
    save_model_folder(student, student_tok, dest)
    shutil.rmtree(work / "runs", ignore_errors=True)  # each model once: the student is in dest, the rest not kept
    with Meter(config.metering, phase=f"latency {run_id}") as meter:
        lat = model_latency(student.cpu(), student_tok, column(data.validation, "text"), config.train.max_length, 30)
    return _student_run(request, report, source, dest, lat, meter.cost, len(unlabeled))


def _student_config(request: DistilRequest, teacher_dir: Path, work: Path) -> DistillConfig:
    """The distillation settings: the teacher run's epochs and learning rate, the climb's data,
    metering, rules and metric, one seed, and the control trained first (decide before paying)."""
    config, run_dir = request.config, request.run_dir
    t = config.train
    hp = request.teacher_run.hyperparameters
    return build_distill_config(
        extra={
            "teacher": str(teacher_dir),
            "out": str(work),
            "cache_dir": str(run_dir / "cache"),
            "data": dataclasses.asdict(config.data),
            "metering": dataclasses.asdict(config.metering),
            "rules": dataclasses.asdict(config.rules),
            "distill": {
                "epochs": float(hp.get("epochs", t.epochs)),
                "learning_rate": float(hp.get("learning_rate", t.learning_rate)),
                "batch_size": t.batch_size,
                "max_length": t.max_length,
                "seeds": [t.seed],
                "control": True,  # the cheaper path, trained first: the teacher must beat it
                "decide_first": True,
                "augment": config.ladder.distil_augment,
                "precision": t.precision,  # students train as the climb's rungs do
            },
            "compress": {"quantize": False, "latency_repeats": 30},
            # students are chosen and compared by the climb's metric
            "criteria": {"metric": config.criteria.metric, "confidence": config.criteria.confidence},
        }
    )


def _student_run(
    request: DistilRequest,
    report: DistillReport,
    source: str,
    dest: Path,
    lat: dict[str, float],
    latency_cost: Cost,
    unlabeled_rows: int,
) -> RunResult:
    """The saved student's record for the climb to judge: the distillation's cost plus the latency
    measurement's, its retention of the teacher's score, and what the decide-first check found."""
    teacher_run, run_dir, metric = request.teacher_run, request.run_dir, request.config.criteria.metric
    best = next(r for r in (*report.students, *report.controls) if r.run_id == report.saved_run)
    summary = report.summary
    teacher_score = report.teacher.metrics.get(metric)
    student_score = best.metrics.get(metric)
    retention = student_score / teacher_score if teacher_score and student_score is not None else None
    return RunResult(
        key=request.key,
        candidate=dataclasses.replace(
            best.candidate,
            name=f"{teacher_run.candidate.name}-student",
            source=source,
            parent_run=teacher_run.run_id,
        ),
        hyperparameters=dict(best.hyperparameters),
        status="budget" if best.status == "budget" else "ok",
        message=best.message if best.status == "budget" else None,
        metrics=dict(best.metrics),
        cost=report.total_cost + latency_cost,
        artifact=str(dest.relative_to(run_dir)),
        details={
            "teacher_run": teacher_run.run_id,
            "steps": best.details.get("steps"),
            "total_steps": best.details.get("total_steps"),
            "retention": retention,
            "retention_metric": metric,
            "distill_phases": {k: v.to_dict() for k, v in report.phases.items()},
            # what the decide-first check found, and which student it kept: "distilled", or
            # "control" (trained without the teacher) when the teacher was not ahead
            "teacher_vs_control": summary.get("teacher_vs_control"),
            "teacher_vs_control_text": summary.get("teacher_vs_control_text"),
            "student_path": "distilled" if best.candidate.kind == "distilled" else "control",
            "unlabeled_rows": unlabeled_rows,
            # phases a kill interrupted before this run finished: their cost is in ``cost`` (phase "lost")
            "lost_to_interruption": [dict(f) for f in report.lost],
            "augmented_rows": summary.get("augmented_rows", 0),
        },
        footprint=Footprint(
            dir_size_mb(dest), lat["latency_ms_p50"], lat["latency_ms_p95"], best.candidate.params_total, "cpu"
        ),
        val_predictions=best.val_predictions,
    )
