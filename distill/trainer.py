"""Distillation on the advisor's training stack: a ``BucketTrainer`` whose loss reads cached teacher logits.

The same Trainer, length-bucketed batches, metering callback and health rules as the advisor's
fine-tuning (``advisor.training.train``); only the loss differs. Each training row carries the teacher's
logits (cached once, see :mod:`distill.teacher`) as an extra column, so the teacher never runs
during training and may use another tokenizer than the student. Rows labelled ``NO_LABEL`` (an
unlabelled transfer set) learn from the teacher alone. Without teacher columns the loss is plain
cross-entropy: the no-teacher control, with the same initialisation, data order, steps and seed.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import DataCollatorWithPadding

from advisor.config.settings import RulesConfig
from advisor.health.rules import LossNotDecreasingRule, first_firing, health_callbacks
from advisor.metering.cost import Meter
from advisor.training.attempt import train_attempt
from advisor.training.batching import BucketTrainer, release_memory
from advisor.training.best import BestWeights
from advisor.training.counting import MeteringCallback
from advisor.training.hf_trainer import CustomLoss, build_trainer
from advisor.training.inference import predict_labels, tokenize
from advisor.training.stopping import bind_meter, stopped_by
from advisor.training.train import quiet_libraries, scratch_dir
from advisor.verdicts.criteria import compute_metrics
from distill.config import KDConfig
from distill.losses import NO_LABEL, distillation_loss, hidden_state_loss, mean_pool
from distill.teacher import TeacherOutputs

_TEACHER_COLUMNS = ("teacher_logits", "teacher_pooled")


class _Collator:
    """Pads token ids per batch (as the advisor does) and stacks the teacher's columns."""

    def __init__(self, tokenizer: Any) -> None:
        self.pad = DataCollatorWithPadding(tokenizer)

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        rows = [dict(f) for f in features]
        extra = {
            k: torch.tensor([r.pop(k) for r in rows], dtype=torch.float32) for k in _TEACHER_COLUMNS if k in rows[0]
        }
        for r in rows:
            r.pop("length", None)
        batch = dict(self.pad(rows))
        batch.update(extra)
        return batch


class DistillTrainer(BucketTrainer):
    """A BucketTrainer whose loss mixes hard labels with the teacher's cached soft targets.

    Args:
        kd: alpha, temperature and hidden-state weight; None trains on the labels only.
        projection: maps the student's pooled state to the teacher's width for the hidden-state
            loss; trained with the student (added to the optimizer), never saved with it.
    """

    def __init__(self, *args: Any, kd: KDConfig | None = None, projection: torch.nn.Module | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self.kd = kd
        self.projection = projection

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        labels = inputs.pop("labels")
        teacher_logits = inputs.pop("teacher_logits", None)
        teacher_pooled = inputs.pop("teacher_pooled", None)
        use_hidden = self.kd is not None and teacher_pooled is not None and self.kd.hidden_weight > 0
        outputs = model(**inputs, output_hidden_states=use_hidden)
        if self.kd is None or teacher_logits is None:
            loss = F.cross_entropy(outputs.logits, labels, ignore_index=NO_LABEL)
        else:
            loss = distillation_loss(outputs.logits, teacher_logits, labels, self.kd.alpha, self.kd.temperature)
        if use_hidden:
            assert self.kd is not None and teacher_pooled is not None
            pooled = mean_pool(outputs.hidden_states[-1], inputs["attention_mask"])
            loss = loss + self.kd.hidden_weight * hidden_state_loss(pooled, teacher_pooled, self.projection)
        return (loss, outputs) if return_outputs else loss

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        optimizer = super().create_optimizer(model) if model is not None else super().create_optimizer()
        if self.projection is not None and not any(
            p is q for group in optimizer.param_groups for p in group["params"] for q in self.projection.parameters()
        ):
            optimizer.add_param_group({"params": list(self.projection.parameters()), "weight_decay": 0.0})
        return optimizer


def _rows(texts: Sequence[str], labels: Sequence[int], teacher: TeacherOutputs | None, hidden: bool) -> Dataset:
    columns: dict[str, Any] = {"text": list(texts), "label": [int(y) for y in labels]}
    if teacher is not None:
        if teacher.logits.shape[0] != len(texts):
            raise ValueError(f"Teacher outputs have {teacher.logits.shape[0]} rows for {len(texts)} texts.")
        columns["teacher_logits"] = teacher.logits.tolist()
        if hidden and teacher.pooled is not None:
            columns["teacher_pooled"] = teacher.pooled.tolist()
    return Dataset.from_dict(columns)


def _tokenised(
    train: tuple[Sequence[str], Sequence[int], TeacherOutputs | None],
    validation: tuple[Sequence[str], Sequence[int]] | None,
    hidden: bool,
    tokenizer: Any,
    max_length: int,
) -> tuple[Any, Any | None]:
    """The tokenised training rows (texts, labels, the teacher's outputs when given; its hidden states
    with ``hidden``) and validation rows, or None without validation."""
    with quiet_libraries():
        train_ds = tokenize(_rows(*train, hidden), tokenizer, max_length)
        val_ds = tokenize(_rows(*validation, None, False), tokenizer, max_length) if validation else None
    return train_ds, val_ds


def health_rules(rules: RulesConfig, on_gpu: bool, unlabelled: bool) -> list[Any]:
    """The advisor's health rules for a student; without the loss rule when some of its rows are
    ``unlabelled``: each batch's loss then mixes cross-entropy on its labelled rows with
    the KL of its unlabelled ones, in shares that vary by batch, and a window's mean moves with
    that mix more than with learning (it stopped a healthy student at 52% of its steps:
    distill_transfer.py, uncertainty, seed 2)."""
    checks = health_callbacks(rules, on_gpu=on_gpu)
    if unlabelled:
        checks = [c for c in checks if not isinstance(c, LossNotDecreasingRule)]
    return checks


def train_student(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int],
    settings: KDConfig,
    *,
    seed: int,
    scratch_root: Path,
    run_id: str,
    meter: Meter,
    teacher: TeacherOutputs | None = None,
    validation: tuple[Sequence[str], Sequence[int]] | None = None,
    rules: RulesConfig | None = None,
    progress: Callable[[str], None] | None = None,
    callbacks: Sequence[Any] = (),
    precision: str = "auto",
    keep_best: tuple[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place on the rows, with the teacher's soft targets when given, by the
    Trainer every rung trains with (:func:`advisor.training.hf_trainer.build_trainer`): only the loss differs.

    Args:
        model: a sequence-classification model (the student, or a teacher being fine-tuned).
        tokenizer: the model's own tokenizer.
        texts: training texts; ``teacher`` rows are in the same order.
        labels: label ids, ``NO_LABEL`` for unlabelled rows (used only with a teacher).
        settings: epochs, learning rate, batch size, alpha, temperature, hidden-state weight ...
        seed: seeds dropout and the data order (the same for a student and its control).
        scratch_root: run folder whose ``.scratch`` holds the Trainer's output while it runs.
        run_id: names the scratch folder.
        meter: the open Meter of this phase; training FLOPs and tokens are counted into it.
        teacher: cached teacher outputs; None trains on the labels only.
        validation: texts and labels evaluated once per epoch (the health rules read the loss).
        rules: training-health rules; defaults when None.
        callbacks: more Trainer callbacks; each :class:`advisor.training.stopping.RunWatcher` (the budget
            watch, the running cost) is bound to ``meter`` and this run's counter first.
        precision: as ``train.precision`` ("auto": bf16 or fp16 on a GPU that has it, fp32 on a CPU).
        keep_best: ``(metric, label names)``: with ``validation``, the model ends with the weights of
            its best evaluation in ``metric``, as every rung does (:class:`advisor.training.best.BestWeights`).

    Returns:
        Training facts: steps, total_steps, final_loss, the health rule that fired, if one did,
        ``budget``: why a budget callback stopped the run, if one did, and ``oom_retries`` with the
        batch that fitted, if memory ran out; ``best_step`` and ``best_metric`` with ``keep_best``.
    """
    say = progress or (lambda _m: None)
    unlabelled = any(int(y) == NO_LABEL for y in labels)
    if teacher is None and unlabelled:
        raise ValueError("Unlabelled rows need a teacher: the no-teacher control trains on labelled rows only.")
    rows = (texts, labels, teacher)
    train_ds, val_ds, loss, projection = _prepared(model, tokenizer, rows, validation, settings, seed)
    steps_per_epoch = max(1, math.ceil(len(train_ds) / settings.batch_size))
    total_steps = max(1, math.ceil(steps_per_epoch * settings.epochs))
    scratch = scratch_dir(scratch_root, run_id)
    metering = MeteringCallback(meter, model.config, num_labels=int(model.config.num_labels))
    bind_meter(callbacks, meter, metering)  # the budget watch reads this run's meter as it goes
    hp = {k: getattr(settings, k) for k in ("learning_rate", "epochs", "warmup_ratio", "weight_decay")}
    build = partial(
        build_trainer, model, tokenizer, (train_ds, val_ds), scratch, hp, seed=seed, precision=precision, loss=loss
    )

    def attempt(batch: tuple[int, int]) -> tuple[BucketTrainer, list[Any]]:  # fresh rules and best-weight keeper
        rules_now = health_rules(rules if rules is not None else RulesConfig(), torch.cuda.is_available(), unlabelled)
        checks = [*_best_keeper(keep_best if val_ds is not None else None), *rules_now]
        return build(batch, (total_steps, "epoch"), [metering, *checks, *callbacks]), checks

    how = "distilling" if teacher is not None else "training on the labels alone"
    say(
        f"{run_id}: {how} ({total_steps} steps, lr {settings.learning_rate:.2g}, {settings.epochs:g} epochs, {len(train_ds)} rows)"
    )
    try:
        trainer, checks, retries = _fit(attempt, (settings.batch_size, 1), [model, projection], metering, say, run_id)
    finally:  # the counter and the scratch folder end with the run, also when it raised
        metering.flush()
        metering.close()
        shutil.rmtree(scratch, ignore_errors=True)
    retries |= _restore_best(model, checks)
    model.eval()
    return {**_facts(trainer.state, total_steps, steps_per_epoch, [*checks, *callbacks]), **retries}


def _prepared(
    model: Any,
    tokenizer: Any,
    train: tuple[Sequence[str], Sequence[int], TeacherOutputs | None],
    validation: tuple[Sequence[str], Sequence[int]] | None,
    settings: KDConfig,
    seed: int,
) -> tuple[Any, Any | None, CustomLoss, torch.nn.Module | None]:
    """The tokenised rows, the loss (KD with a teacher, cross-entropy without) and the hidden-state
    projection it trains, if any."""
    teacher = train[2]
    hidden = teacher is not None and settings.hidden_weight > 0
    train_ds, val_ds = _tokenised(train, validation, hidden, tokenizer, settings.max_length)
    projection = _projection(model, teacher, seed) if hidden else None
    kd = settings if teacher is not None else None
    return (
        train_ds,
        val_ds,
        CustomLoss(partial(DistillTrainer, kd=kd, projection=projection), _Collator(tokenizer)),
        projection,
    )


def _restore_best(model: Any, checks: Sequence[Any]) -> dict[str, Any]:
    """Load the best evaluation's weights into ``model`` when the attempt kept them; the facts to record."""
    best = next((c for c in checks if isinstance(c, BestWeights)), None)
    if best is None or not best.restore(model):
        return {}
    return {"best_step": best.step, "best_metric": best.metrics.get(best.metric)}


def _best_keeper(keep_best: tuple[str, Sequence[str]] | None) -> list[BestWeights]:
    """The attempt's keeper of its best evaluation's weights in ``keep_best``'s metric (none without)."""
    if keep_best is None:
        return []
    metric, names = keep_best
    return [BestWeights(metric, lambda y, ids: compute_metrics(y, ids, names))]


def _fit(
    attempt: Callable[[tuple[int, int]], tuple[BucketTrainer, list[Any]]],
    batch: tuple[int, int],
    modules: Sequence[torch.nn.Module | None],
    metering: MeteringCallback,
    say: Callable[[str], None],
    run_id: str,
) -> tuple[BucketTrainer, list[Any], dict[str, Any]]:
    """Train until an attempt does not run out of memory, as a rung does (:func:`advisor.training.attempt.train_attempt`).

    Each attempt that does is recorded in ``oom_retries``; the next restarts from the first weights
    of ``modules`` (the student, its projection) at half the rows per device with twice the
    accumulation: the same effective batch, data order and steps. Returns the last attempt's
    Trainer and health rules, and the retries' facts.
    """
    kept = [m for m in modules if m is not None]
    first = [{k: v.detach().to("cpu", copy=True) for k, v in m.state_dict().items()} for m in kept]
    facts: dict[str, Any] = {}
    while True:
        trainer, checks = attempt(batch)
        retry = train_attempt(trainer, checks, batch)
        if retry is None:
            if batch[1] > 1:
                facts["per_device_batch_size"], facts["gradient_accumulation_steps"] = batch
            return trainer, checks, facts
        smaller, why = retry
        facts.setdefault("oom_retries", []).append({"batch_size": batch[0], "accumulation": batch[1], "error": why})
        say(f"{run_id}: out of memory at batch {batch[0]}; again at {smaller[0]} x {smaller[1]} accumulated")
        metering.close()  # the next Trainer attaches its hook again
        del trainer
        release_memory()
        for module, state in zip(kept, first, strict=True):
            module.load_state_dict(state)
        batch = smaller


def _projection(model: Any, teacher: TeacherOutputs | None, seed: int) -> torch.nn.Module | None:
    """A map from the student's pooled state to the teacher's width for the hidden-state loss, or
    None when the widths match (or the teacher has no pooled states)."""
    if teacher is None or teacher.pooled is None:
        return None
    width, target = int(model.config.hidden_size), int(teacher.pooled.shape[-1])
    if width == target:
        return None
    torch.manual_seed(seed)
    projection = torch.nn.Linear(width, target)
    return projection.to(next(model.parameters()).device)


def _facts(state: Any, total_steps: int, steps_per_epoch: int, callbacks: Sequence[Any]) -> dict[str, Any]:
    """Steps, the last epoch's mean loss, the health rule that fired and why the budget stopped the run."""
    losses = [float(h["loss"]) for h in state.log_history if "loss" in h]
    facts: dict[str, Any] = {
        "steps": state.global_step,
        "total_steps": total_steps,
        "final_loss": sum(losses[-steps_per_epoch:]) / len(losses[-steps_per_epoch:]) if losses else float("nan"),
    }
    stopper = stopped_by(callbacks)
    if stopper is not None and stopper.stop_status == "budget":
        facts["budget"] = stopper.stop_message
    firing = first_firing(callbacks)
    if firing is not None:
        facts["rule"] = {"rule": firing.rule, "step": firing.step, "message": firing.message}
    return facts


def evaluate(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int],
    label_names: Sequence[str],
    *,
    max_length: int,
    meter: Meter | None = None,
) -> tuple[dict[str, float], tuple[int, ...]]:
    """The advisor's metrics on labelled texts, and each row's predicted label (forward passes metered)."""
    counter = MeteringCallback(meter) if meter is not None else None
    if counter is not None:
        counter.attach(model)
    try:
        preds = predict_labels(model, tokenizer, list(texts), max_length)
    finally:
        if counter is not None:
            counter.close()
    return compute_metrics(list(labels), preds, label_names), tuple(int(p) for p in preds)
