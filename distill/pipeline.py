"""A whole distillation: teacher (fine-tuned first if needed), cached logits, students per seed with
their no-teacher controls, then (``distill.phases``) int8 quantisation, latency and the one test scoring.

Every phase runs inside its own ``advisor.metering.cost.Meter`` and every finished run goes into the output
folder's ledger (``advisor.store.ledger``), each student's weights beside it, so the same command run
again reads the work back instead of repeating it; what is not a run (the logits pass, latency,
test scoring, work lost to a kill) is a fact in the ledger's cost log (``distill.records``).
Students are chosen and compared by ``criteria.metric`` on the validation rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from advisor.climb.budget import BudgetCallback
from advisor.climb.compaction import cheaper_path, needs_teacher_check
from advisor.climb.policy import CompactionEvidence, Stop, decide
from advisor.data.task import TaskData, column
from advisor.store.ledger import Ledger
from advisor.types import Cost, RunResult
from distill.augment import augment
from distill.config import DistillConfig, KDConfig
from distill.decide import TeacherCheck, describe, teacher_vs_control
from distill.interrupted import RunningCost, recover_lost
from distill.phases import Delivered, account, deliver
from distill.records import Runs
from distill.students import make_student
from distill.summary import DistillReport, summarise
from distill.teacher import TeacherOutputs
from distill.training import Job, logits_phase, teacher_phase, train_one

Progress = Callable[[str], None]


def distill_models(
    teacher: Any,
    tokenizer: Any,
    data: TaskData,
    config: DistillConfig,
    *,
    work_dir: Path,
    teacher_needs_finetune: bool = False,
    unlabeled: Sequence[str] = (),
    ledger: Ledger | None = None,
    progress: Progress | None = None,
    callbacks: Sequence[Any] = (),
    score_test: bool = False,
) -> tuple[DistillReport, Any, Any]:
    """Run every phase on a loaded teacher and data.

    Args:
        teacher: a sequence-classification model whose outputs are ``data.label_names`` in order.
        tokenizer: the teacher's tokenizer.
        data: train/validation/test splits with "text" and int "label", and label_names.
        config: the resolved settings.
        work_dir: where students (``runs/<run_id>/model``), a fine-tuned teacher (``teacher/``)
            and, unless ``config.cache_dir`` says otherwise, the teacher-logit cache are kept.
        teacher_needs_finetune: the teacher's head is new; fine-tune it first (metered).
        unlabeled: texts without labels: the teacher's logits on them also train the student.
        ledger: finished runs and cost facts are read back from it and new ones written to it
            (None: no resume); with one, a training phase's running cost is saved as it goes and
            work an earlier, interrupted call lost is counted (``distill.interrupted``).
        progress: called with one-line progress messages.
        callbacks: Trainer callbacks for every student and control (the climb's budget watch: each
            phase is charged to it as it ends, and once it stops a student no further one starts).
        score_test: score the test split once, for the delivered student (and its int8 form);
            the advisor's compaction step leaves it to the climb, which scores its pick itself.

    Returns:
        The report (without ``student_dir``), the student to save, and its tokenizer.
    """
    say = progress or (lambda _msg: None)
    runs = Runs(ledger, say)
    keep = work_dir if ledger is not None else None  # running costs are saved only where a rerun reads them
    if ledger is not None:
        recover_lost(work_dir, runs, say)
    make_student(config, teacher, tokenizer, tuple(data.label_names))  # a bad map or checkpoint fails first
    teacher.to(torch.device("cuda" if torch.cuda.is_available() else "cpu"))  # latency is measured on the CPU
    job = Job(runs, keep, teacher, tokenizer, data, config, work_dir, say)
    teacher_run = _scored_teacher(job, teacher_needs_finetune, callbacks)
    transfer, added = _transfer_set(column(data.train, "text"), unlabeled, config.distill, say)
    trained = _seeds(job, teacher_run, transfer, callbacks)
    d = deliver(runs, config, data, (teacher, tokenizer), trained.students, trained.controls, work_dir, score_test, say)
    costs = account(runs, teacher_run, d.students, d.controls, d.quantized, trained.outputs)
    report = DistillReport(
        teacher=teacher_run,
        students=tuple(d.students),
        controls=tuple(d.controls),
        quantized=d.quantized,
        phases=costs.phases,
        notes=costs.notes,
        reused=costs.reused,
        lost=costs.lost,
        latency=d.latency,
        summary=_summary(config, data, teacher_run, trained, d, len(transfer) - added, added),
        saved_run=d.best.run_id,
        config=config.to_dict(),
    )
    return report, d.student, d.tokenizer


class _Trained(NamedTuple):
    """What the seeds trained, and what decided whether a distilled student was worth paying for."""

    students: list[RunResult]
    controls: list[RunResult]
    outputs: TeacherOutputs | None  # the teacher's outputs (None when no student needed them)
    check: TeacherCheck | None  # the teacher-vs-control check
    cheaper: bool  # the cheaper path was taken: no distilled student


def _scored_teacher(job: Job, needs_finetune: bool, callbacks: Sequence[Any]) -> RunResult:
    """The teacher's run: read back, or fine-tuned when needed and scored, its cost charged to the budget."""
    watch = [cb for cb in callbacks if isinstance(cb, BudgetCallback)]
    teacher_run = job.runs.get("teacher") or teacher_phase(job, needs_finetune, watch)
    metric = job.config.criteria.metric
    job.say(f"teacher: validation {metric} {teacher_run.metrics[metric]:.4f}")
    for cb in watch:  # the teacher's pass ran outside any Trainer the watch can see
        cb.charge(teacher_run.cost)
    return teacher_run


def _transfer_set(texts: list[str], unlabeled: Sequence[str], k: KDConfig, say: Progress) -> tuple[list[str], int]:
    """The texts the teacher's logits teach without labels: the unlabelled ones, then ``distill.augment``
    perturbed copies of each labelled text; also how many copies were added."""
    added = augment(texts, k.augment, seed=k.seeds[0])  # [] when distill.augment is 0
    if added:
        say(f"augmentation: {len(added)} perturbed copies of the labelled texts join the transfer set")
    return [*unlabeled, *added], len(added)


def _summary(
    config: DistillConfig,
    data: TaskData,
    teacher_run: RunResult,
    trained: _Trained,
    d: Delivered,
    unlabeled_rows: int,
    augmented_rows: int,
) -> dict[str, Any]:
    """The report's headline numbers, with the transfer set's make-up and the teacher-vs-control check."""
    check = trained.check
    headline = summarise(
        teacher_run,
        d.students,
        d.controls,
        d.quantized,
        d.latency,
        d.sizes,
        d.best.run_id,
        metric=config.criteria.metric,
        val_labels=column(data.validation, "label"),
        num_labels=len(data.label_names),
        level=config.criteria.confidence,
    )
    return {
        **headline,
        "unlabeled_rows": unlabeled_rows,
        "augmented_rows": augmented_rows,
        "cheaper_path": trained.cheaper,
        "teacher_vs_control": check.to_dict() if check is not None else None,
        "teacher_vs_control_text": describe(check, unlabeled_rows + augmented_rows) if check is not None else None,
    }


def _seeds(job: Job, teacher_run: RunResult, transfer: list[str], callbacks: Sequence[Any]) -> _Trained:
    """The controls and distilled students the policy asks for, in its order, each read back or trained.

    :func:`advisor.climb.policy.decide` on a :class:`CompactionEvidence` says what comes next (per
    seed the control, then the distilled student; none on the cheaper path; nothing after a budget
    stop); this loop carries it out, and compares the teacher with the first control when asked.
    """
    runs, data, config, say = job.runs, job.data, job.config, job.say
    k = config.distill
    texts, labels = column(data.train, "text"), [int(y) for y in column(data.train, "label")]
    watch = [cb for cb in callbacks if isinstance(cb, BudgetCallback)]
    # the settings a student's record carries as its hyperparameters
    hp_kd = {f: getattr(k, f) for f in ("alpha", "temperature", "hidden_weight", "epochs", "learning_rate")}
    hp_kd |= {f: getattr(k, f) for f in ("batch_size", "max_length", "warmup_ratio", "weight_decay")}
    outputs: TeacherOutputs | None = None
    check: TeacherCheck | None = None
    evidence = CompactionEvidence(tuple(k.seeds), k.control, k.decide_first, (), transfer_rows=len(transfer))
    while not isinstance(action := decide(evidence), Stop):
        run = runs.get(action.run_id)
        if run is None:
            if action.key.role == "distilled" and outputs is None:
                spent = sum((r.cost for r in (teacher_run, *evidence.runs)), Cost())
                outputs = logits_phase(job, texts + transfer, watch, spent)
            keeper = RunningCost(job.keep, action.run_id)
            role, seed = action.key.role, int(action.key.number or 0)
            run = runs.put(train_one(job, role, seed, (texts, labels, transfer), outputs, hp_kd, [*callbacks, keeper]))
            keeper.done()
            for cb in watch:
                cb.charge(run.cost)
        evidence = dataclasses.replace(evidence, runs=(*evidence.runs, run))
        if needs_teacher_check(evidence):
            check = teacher_vs_control(
                teacher_run.val_predictions,
                run.val_predictions,
                column(data.validation, "label"),
                metric=config.criteria.metric,
            )
            say(f"before distilling: {describe(check, len(transfer))}")
            evidence = dataclasses.replace(evidence, teacher_check=check.verdict)
            if cheaper_path(evidence):
                say("decide_first: no distilled student is trained; the control is kept as the student")
    students = [r for r in evidence.runs if r.key.role == "distilled"]
    controls = [r for r in evidence.runs if r.key.role == "control"]
    return _Trained(students, controls, outputs, check, cheaper_path(evidence))
