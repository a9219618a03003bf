"""A whole distillation: teacher (fine-tuned first if needed), cached logits, students per seed with
their no-teacher controls, then (``distill.phases``) int8 quantisation, latency and the one test scoring.

Every phase runs inside its own ``advisor.cost.Meter`` and every finished run goes into the output
folder's ledger (``advisor.ledger``), each student's weights beside it, so the same command run
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

from advisor.budget import BudgetCallback
from advisor.cost import Meter
from advisor.data import TaskData, column
from advisor.inference import forward_flops
from advisor.ledger import Ledger
from advisor.loading import count_parameters
from advisor.runkey import RunKey
from advisor.train import save_model_folder
from advisor.types import Candidate, Cost, RunResult, RunStatus
from distill.augment import augment
from distill.config import DistillConfig, KDConfig
from distill.decide import TeacherCheck, describe, teacher_vs_control, worth_distilling
from distill.interrupted import RunningCost, recover_lost
from distill.losses import NO_LABEL
from distill.phases import Delivered, account, deliver
from distill.records import Runs
from distill.students import make_student
from distill.summary import DistillReport, summarise
from distill.teacher import TeacherOutputs, refuse_pass, save_pass_cost, teacher_outputs
from distill.trainer import evaluate, train_student

Progress = Callable[[str], None]


def _candidate(name: str, source: str, model: Any, kind: Any, parent: str | None = None) -> Candidate:
    total, non_embed = count_parameters(model)
    return Candidate(
        name=name,
        kind=kind,
        source=source,
        params_total=total,
        params_non_embedding=non_embed,
        layers=getattr(model.config, "num_hidden_layers", None),
        hidden=getattr(model.config, "hidden_size", None),
        parent_run=parent,
    )


def _judge(model: Any, tok: Any, data: TaskData, max_length: int, meter: Meter) -> dict[str, Any]:
    """Validation metrics and each validation row's prediction (for paired comparisons and intervals).

    The test split is not scored here: it is scored once, for the delivered student only
    (:func:`distill.phases.score_test_once`).
    """
    names = tuple(data.label_names)
    val, preds = evaluate(
        model, tok, column(data.validation, "text"), column(data.validation, "label"), names,
        max_length=max_length, meter=meter,
    )  # fmt: skip
    return {"metrics": val, "val_predictions": preds}


def _teacher_settings(config: DistillConfig) -> KDConfig:
    t = config.teacher_train
    return KDConfig(
        alpha=1.0, epochs=t.epochs, learning_rate=t.learning_rate, batch_size=t.batch_size,
        max_length=t.max_length, warmup_ratio=t.warmup_ratio, weight_decay=t.weight_decay, seeds=[t.seed],
    )  # fmt: skip


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
    teacher_run = _scored_teacher(
        runs, keep, teacher, tokenizer, data, config, teacher_needs_finetune, work_dir, callbacks, say
    )
    transfer, added = _transfer_set(column(data.train, "text"), unlabeled, config.distill, say)
    trained = _seeds(runs, keep, teacher, tokenizer, data, config, teacher_run, transfer, work_dir, callbacks, say)
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


def _scored_teacher(
    runs: Runs,
    keep: Path | None,
    teacher: Any,
    tokenizer: Any,
    data: TaskData,
    config: DistillConfig,
    needs_finetune: bool,
    work_dir: Path,
    callbacks: Sequence[Any],
    say: Progress,
) -> RunResult:
    """The teacher's run: read back, or fine-tuned when needed and scored, its cost charged to the budget."""
    watch = [cb for cb in callbacks if isinstance(cb, BudgetCallback)]
    teacher_run = runs.get("teacher") or _teacher_phase(
        runs, keep, teacher, tokenizer, data, config, needs_finetune, work_dir, watch, say
    )
    say(f"teacher: validation {config.criteria.metric} {teacher_run.metrics[config.criteria.metric]:.4f}")
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


def _teacher_phase(
    runs: Runs, keep: Path | None, teacher: Any, tokenizer: Any, data: TaskData, config: DistillConfig,
    needs_finetune: bool, work_dir: Path, watch: Sequence[BudgetCallback], say: Progress,
) -> RunResult:  # fmt: skip
    """Fine-tune the teacher when its head is new, score it on validation, and record it."""
    k = config.distill
    texts, labels = column(data.train, "text"), [int(y) for y in column(data.train, "label")]
    if watch:  # forecast the teacher's passes (analytic FLOPs, as the meter counts them) first
        flops = forward_flops(teacher, tokenizer, column(data.validation, "text"), k.max_length)
        if needs_finetune:  # x3 per training pass (advisor.flops.PASSES), every epoch
            flops += 3 * _teacher_settings(config).epochs * forward_flops(teacher, tokenizer, texts, k.max_length)
        refuse_pass(watch, "scoring the teacher on validation", flops, Cost())
    keeper = RunningCost(keep, "teacher")
    with keeper.metered(Meter(config.metering, phase="teacher")) as m:
        hp: dict[str, Any] = {}
        if needs_finetune:
            settings = _teacher_settings(config)
            say(f"fine-tuning the teacher first ({settings.epochs:g} epochs; metered and reported)")
            facts = train_student(
                teacher, tokenizer, texts, labels, settings, seed=settings.seeds[0], scratch_root=work_dir,
                run_id="teacher", meter=m, validation=None, rules=config.rules, progress=say, callbacks=[keeper],
            )  # fmt: skip
            hp = {**dataclasses.asdict(config.teacher_train), **facts}
            save_model_folder(teacher, tokenizer, work_dir / "teacher")
        judged = _judge(teacher, tokenizer, data, k.max_length, m)
    run = runs.put(
        RunResult(
            key=RunKey("teacher"),
            candidate=_candidate("teacher", config.teacher, teacher, "finetune"),
            hyperparameters=hp,
            status="ok",
            cost=m.cost,
            **judged,
            details={"fine_tuned_here": needs_finetune},
        )
    )
    keeper.done()
    return run


def _logits_phase(
    runs: Runs, teacher: Any, tokenizer: Any, texts: list[str], config: DistillConfig, work_dir: Path,
    watch: Sequence[BudgetCallback], spent: Cost, say: Progress,
) -> TeacherOutputs:  # fmt: skip
    """The teacher's logits on the transfer texts: from the cache, or one metered pass whose cost is logged."""
    k = config.distill
    cache_dir = Path(config.cache_dir) if config.cache_dir is not None else work_dir
    with Meter(config.metering, phase="teacher_logits") as m:
        outputs = teacher_outputs(
            teacher, tokenizer, texts, max_length=k.max_length, cache_dir=cache_dir,
            with_pooled=k.hidden_weight > 0, meter=m, progress=say,
            before_running=lambda: refuse_pass(
                watch, "the teacher's logits pass", forward_flops(teacher, tokenizer, texts, k.max_length), spent
            ),
        )  # fmt: skip
    if not outputs.cache_hit:  # a cache hit ran nothing worth a fact: the pass that made it is the cost
        runs.log_cost("teacher_logits", m.cost, key=outputs.key)
        save_pass_cost(outputs, m.cost)
        for cb in watch:
            cb.charge(m.cost)
    return outputs


def _train_one(
    role: str, seed: int, config: DistillConfig, teacher: Any, tokenizer: Any, data: TaskData, texts: list[str],
    labels: list[int], transfer: list[str], outputs: TeacherOutputs | None, work_dir: Path,
    hp: dict[str, Any], say: Progress, callbacks: Sequence[Any],
) -> RunResult:  # fmt: skip
    """Train, judge (validation) and save one student (with the teacher) or control (without it).

    ``callbacks`` holds this run's :class:`~distill.interrupted.RunningCost`, which meters it.
    """
    key = RunKey(role, number=seed)  # type: ignore[arg-type]
    run_id = key.run_id
    folder = work_dir / "runs" / run_id / "model"
    keeper = next(cb for cb in callbacks if isinstance(cb, RunningCost))
    torch.manual_seed(seed)  # a checkpoint student's new head starts the same for both roles
    model, tok, origin = make_student(config, teacher, tokenizer, tuple(data.label_names))
    model.to(next(teacher.parameters()).device)
    with_teacher = role == "distilled"
    k = config.distill
    for cb in callbacks:  # leave room for the epoch's evaluation, and for _judge once stopped
        if isinstance(cb, BudgetCallback):
            val = column(data.validation, "text")
            epoch_eval = forward_flops(model, tok, val, k.max_length, length_sorted=False)
            cb.reserve(epoch_eval, forward_flops(model, tok, val, k.max_length), evaluate_on_stop=False)
    with keeper.metered(Meter(config.metering, phase=run_id)) as m:
        facts = train_student(
            model, tok, texts + transfer if with_teacher else texts,
            labels + [NO_LABEL] * len(transfer) if with_teacher else labels, k, seed=seed,
            scratch_root=work_dir, run_id=run_id, meter=m, teacher=outputs if with_teacher else None,
            validation=(column(data.validation, "text"), column(data.validation, "label")),
            rules=config.rules, progress=say, callbacks=callbacks,
        )  # fmt: skip
        judged = _judge(model, tok, data, k.max_length, m)
    model.cpu()
    save_model_folder(model, tok, folder)
    say(f"{run_id}: validation {config.criteria.metric} {judged['metrics'][config.criteria.metric]:.4f}")
    rule = facts.get("rule")
    status: RunStatus = "ok"
    message: str | None = None
    if rule is not None:
        status, message = "stopped", f"stopped by rule {rule['rule']} at step {rule['step']}: {rule['message']}"
    if facts.get("budget"):  # the partial student is judged and kept, like any budget-stopped run
        status, message = "budget", facts["budget"]
    return RunResult(
        key=key,
        candidate=_candidate(run_id, origin, model, "distilled" if with_teacher else "finetune", parent="teacher"),
        hyperparameters={**hp, "seed": seed, **({} if with_teacher else {"alpha": 1.0})},
        status=status,
        message=message,
        cost=m.cost,
        artifact=str(folder.relative_to(work_dir)),
        details={
            "role": role,
            "teacher_logits_key": outputs.key if with_teacher and outputs is not None else None,
            # rows without a label it learned from (unlabelled texts and augmented copies)
            "transfer_rows": len(transfer) if with_teacher else 0,
            **facts,
        },
        **judged,
    )


def _seeds(
    runs: Runs, keep: Path | None, teacher: Any, tokenizer: Any, data: TaskData, config: DistillConfig,
    teacher_run: RunResult, transfer: list[str], work_dir: Path, callbacks: Sequence[Any], say: Progress,
) -> _Trained:  # fmt: skip
    """Per seed, the control (the cheap path, first) and the distilled student, each read back or trained."""
    k = config.distill
    texts, labels = column(data.train, "text"), [int(y) for y in column(data.train, "label")]
    watch = [cb for cb in callbacks if isinstance(cb, BudgetCallback)]
    hp_kd = {f: getattr(k, f) for f in ("alpha", "temperature", "hidden_weight", "epochs", "learning_rate",
                                        "batch_size", "max_length", "warmup_ratio", "weight_decay")}  # fmt: skip
    students: list[RunResult] = []
    controls: list[RunResult] = []
    outputs: TeacherOutputs | None = None
    check: TeacherCheck | None = None
    cheaper = False  # decide_first and the teacher did not clear its bar: no distilled student is paid for
    for seed in k.seeds:
        # the control first: it is the cheap path the distilled student has to beat
        for role in (["control"] if k.control else []) + ["distilled"]:
            if role == "distilled" and cheaper:
                continue
            run_id = RunKey(role, number=seed).run_id  # type: ignore[arg-type]
            run = runs.get(run_id)
            if run is None:
                if role == "distilled" and outputs is None:
                    spent = sum((r.cost for r in (teacher_run, *students, *controls)), Cost())
                    outputs = _logits_phase(runs, teacher, tokenizer, texts + transfer, config, work_dir, watch,
                                            spent, say)  # fmt: skip
                keeper = RunningCost(keep, run_id)
                run = runs.put(_train_one(role, seed, config, teacher, tokenizer, data, texts, labels, transfer,
                                          outputs, work_dir, hp_kd, say, [*callbacks, keeper]))  # fmt: skip
                keeper.done()
                for cb in watch:
                    cb.charge(run.cost)
            (students if role == "distilled" else controls).append(run)
            if run.status == "budget":
                break
            if role == "control" and check is None:
                check = teacher_vs_control(
                    teacher_run.val_predictions,
                    run.val_predictions,
                    column(data.validation, "label"),
                    metric=config.criteria.metric,
                )
                say(f"before distilling: {describe(check, len(transfer))}")
                cheaper = k.decide_first and not worth_distilling(check, len(transfer))
                if cheaper:
                    say("decide_first: no distilled student is trained; the control is kept as the student")
        if any(r.status == "budget" for r in (*students, *controls)):
            break  # the budget is spent: no further seed starts

    return _Trained(students, controls, outputs, check, cheaper)
