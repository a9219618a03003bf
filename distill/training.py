"""The runs of one distillation: the teacher (fine-tuned when its head is new) and its logits pass,
and each student or no-teacher control, trained, judged on the validation rows and saved.

Each phase meters itself (``advisor.metering.cost.Meter``), records its run or cost fact in the output
folder's ledger (``distill.records``) and charges its cost to the budget watch; the order of the
phases and which of them run is :mod:`distill.pipeline`'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from advisor.climb.budget import BudgetCallback
from advisor.data.task import TaskData, column
from advisor.metering.cost import Meter
from advisor.models.loading import count_parameters
from advisor.runkey import RunKey
from advisor.training.hf_trainer import EVAL_BATCH
from advisor.training.inference import forward_flops
from advisor.training.train import save_model_folder
from advisor.types import Candidate, Cost, RunResult, RunStatus
from distill.config import DistillConfig, KDConfig
from distill.interrupted import RunningCost
from distill.losses import NO_LABEL
from distill.records import Runs
from distill.students import make_student
from distill.teacher import TeacherOutputs, refuse_pass, save_pass_cost, teacher_outputs
from distill.trainer import evaluate, train_student

Progress = Callable[[str], None]
#: a run's training rows: the labelled texts, their label ids, and the transfer set's texts (no labels)
Rows = tuple[list[str], list[int], list[str]]


@dataclass(frozen=True)
class Job:
    """What every phase of one distillation works with.

    Attributes:
        runs: the output folder's finished runs and cost facts.
        keep: where running costs are saved (None: no ledger, nothing to resume).
        teacher, tokenizer: the loaded teacher and its tokenizer.
        work_dir: where students, a fine-tuned teacher and (by default) the logit cache are kept.
    """

    runs: Runs
    keep: Path | None
    teacher: Any
    tokenizer: Any
    data: TaskData
    config: DistillConfig
    work_dir: Path
    say: Progress

    def train(
        self, model: Any, tok: Any, rows: tuple[list[str], list[int]], settings: KDConfig, **kw: Any
    ) -> dict[str, Any]:
        """:func:`distill.trainer.train_student` on ``rows`` with this job's scratch folder, rules and progress,
        keeping the weights of the best evaluation in the metric the distillation is judged by."""
        texts, labels = rows
        config = self.config
        kw.setdefault("keep_best", (config.criteria.metric, tuple(self.data.label_names)))
        return train_student(
            model,
            tok,
            texts,
            labels,
            settings,
            scratch_root=self.work_dir,
            rules=config.rules,
            progress=self.say,
            precision=settings.precision,
            **kw,
        )


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

    Returns:
        ``{"metrics": ..., "val_predictions": ...}``, keyword arguments of a RunResult.
    """
    texts, labels = column(data.validation, "text"), column(data.validation, "label")
    val, preds = evaluate(model, tok, texts, labels, tuple(data.label_names), max_length=max_length, meter=meter)
    return {"metrics": val, "val_predictions": preds}


def teacher_settings(config: DistillConfig) -> KDConfig:
    """The teacher's fine-tune as a KD run on the labels alone (``alpha`` 1), from ``teacher_train``."""
    t = config.teacher_train
    optim = {k: getattr(t, k) for k in ("epochs", "learning_rate", "batch_size", "max_length", "warmup_ratio")}
    return KDConfig(alpha=1.0, weight_decay=t.weight_decay, seeds=[t.seed], **optim)


def teacher_phase(job: Job, needs_finetune: bool, watch: Sequence[BudgetCallback]) -> RunResult:
    """Fine-tune the teacher when its head is new, score it on validation, and record it."""
    config, data, teacher, tokenizer = job.config, job.data, job.teacher, job.tokenizer
    k = config.distill
    texts, labels = column(data.train, "text"), [int(y) for y in column(data.train, "label")]
    if watch:  # forecast the teacher's passes (analytic FLOPs, as the meter counts them) first
        flops = forward_flops(teacher, tokenizer, column(data.validation, "text"), k.max_length)
        if needs_finetune:  # x3 per training pass (advisor.metering.flops.PASSES), every epoch
            flops += 3 * teacher_settings(config).epochs * forward_flops(teacher, tokenizer, texts, k.max_length)
        refuse_pass(watch, "scoring the teacher on validation", flops, Cost())
    keeper = RunningCost(job.keep, "teacher")
    with keeper.metered(Meter(config.metering, phase="teacher")) as m:
        hp: dict[str, Any] = {}
        if needs_finetune:
            settings = teacher_settings(config)
            job.say(f"fine-tuning the teacher first ({settings.epochs:g} epochs; metered and reported)")
            seed = settings.seeds[0]
            facts = job.train(
                teacher, tokenizer, (texts, labels), settings, seed=seed, run_id="teacher", meter=m, callbacks=[keeper]
            )
            hp = {**dataclasses.asdict(config.teacher_train), **facts}
            save_model_folder(teacher, tokenizer, job.work_dir / "teacher")
        judged = _judge(teacher, tokenizer, data, k.max_length, m)
    run = job.runs.put(
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


def logits_phase(job: Job, texts: list[str], watch: Sequence[BudgetCallback], spent: Cost) -> TeacherOutputs:
    """The teacher's logits on the transfer texts: from the cache, or one metered pass whose cost is logged."""
    config, teacher, tokenizer = job.config, job.teacher, job.tokenizer
    k = config.distill
    cache_dir = Path(config.cache_dir) if config.cache_dir is not None else job.work_dir

    def refuse() -> None:
        flops = forward_flops(teacher, tokenizer, texts, k.max_length)
        refuse_pass(watch, "the teacher's logits pass", flops, spent)

    with Meter(config.metering, phase="teacher_logits") as m:
        outputs = teacher_outputs(
            teacher,
            tokenizer,
            texts,
            max_length=k.max_length,
            cache_dir=cache_dir,
            with_pooled=k.hidden_weight > 0,
            meter=m,
            progress=job.say,
            before_running=refuse,
        )
    if not outputs.cache_hit:  # a cache hit ran nothing worth a fact: the pass that made it is the cost
        job.runs.log_cost("teacher_logits", m.cost, key=outputs.key)
        save_pass_cost(outputs, m.cost)
        for cb in watch:
            cb.charge(m.cost)
    return outputs


def train_one(
    job: Job,
    role: str,
    seed: int,
    rows: Rows,
    outputs: TeacherOutputs | None,
    hp: dict[str, Any],
    callbacks: Sequence[Any],
) -> RunResult:
    """Train, judge (validation) and save one student (with the teacher) or control (without it).

    ``callbacks`` holds this run's :class:`~distill.interrupted.RunningCost`, which meters it.
    """
    config, data, k = job.config, job.data, job.config.distill
    key = RunKey(role, number=seed)  # type: ignore[arg-type]
    run_id = key.run_id
    folder = job.work_dir / "runs" / run_id / "model"
    keeper = next(cb for cb in callbacks if isinstance(cb, RunningCost))
    torch.manual_seed(seed)  # a checkpoint student's new head starts the same for both roles
    model, tok, origin = make_student(config, job.teacher, job.tokenizer, tuple(data.label_names))
    model.to(next(job.teacher.parameters()).device)
    with_teacher = role == "distilled"
    texts, labels, transfer = rows
    if with_teacher:  # the transfer set's rows carry no label: the teacher's logits teach them
        texts, labels = texts + transfer, labels + [NO_LABEL] * len(transfer)
    learn = texts, labels
    for cb in callbacks:  # leave room for the epoch's evaluation, and for _judge once stopped
        if isinstance(cb, BudgetCallback):
            val_texts = column(data.validation, "text")
            # the Trainer's evaluation loop: the texts in their order, at its evaluation batch
            epoch_eval = forward_flops(model, tok, val_texts, k.max_length, EVAL_BATCH, length_sorted=False)
            cb.reserve(epoch_eval, forward_flops(model, tok, val_texts, k.max_length), evaluate_on_stop=False)
    with keeper.metered(Meter(config.metering, phase=run_id)) as m:
        teaching = outputs if with_teacher else None
        val = column(data.validation, "text"), column(data.validation, "label")
        facts = job.train(
            model,
            tok,
            learn,
            k,
            seed=seed,
            run_id=run_id,
            meter=m,
            teacher=teaching,
            validation=val,
            callbacks=callbacks,
        )
        judged = _judge(model, tok, data, k.max_length, m)
    model.cpu()
    save_model_folder(model, tok, folder)
    job.say(f"{run_id}: validation {config.criteria.metric} {judged['metrics'][config.criteria.metric]:.4f}")
    status, message = _ending(facts)
    return RunResult(
        key=key,
        candidate=_candidate(run_id, origin, model, "distilled" if with_teacher else "finetune", parent="teacher"),
        hyperparameters={**hp, "seed": seed, **({} if with_teacher else {"alpha": 1.0})},
        status=status,
        message=message,
        cost=m.cost,
        artifact=str(folder.relative_to(job.work_dir)),
        details={
            "role": role,
            "teacher_logits_key": outputs.key if with_teacher and outputs is not None else None,
            # rows without a label it learned from (unlabelled texts and augmented copies)
            "transfer_rows": len(transfer) if with_teacher else 0,
            **facts,
        },
        **judged,
    )


def _ending(facts: dict[str, Any]) -> tuple[RunStatus, str | None]:
    """How a student's training ended, from its facts: ``ok``, ``stopped`` by a health rule, or ``budget``."""
    status: RunStatus = "ok"
    message: str | None = None
    rule = facts.get("rule")
    if rule is not None:
        status, message = "stopped", f"stopped by rule {rule['rule']} at step {rule['step']}: {rule['message']}"
    if facts.get("budget"):  # the partial student is judged and kept, like any budget-stopped run
        status, message = "budget", facts["budget"]
    return status, message
