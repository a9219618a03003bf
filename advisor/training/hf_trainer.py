"""The Hugging Face Trainer as greenladder sets it up for one training attempt: a rung's, a teacher's, a student's.

Length-bucketed training batches (:class:`advisor.training.batching.BucketTrainer`), an evaluation set
sorted by length, a cadence of evaluations that feed best-weight keeping, early stopping and
pruning, no checkpoints on disk, a loss logged every step for the health rules, mixed precision
where the device has it, every rank stopping when one does, and a progress bar that does not print
every log. A distilled student differs in its loss alone (:class:`CustomLoss`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import (
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from advisor import distributed
from advisor.metering import devices
from advisor.training.batching import BucketTrainer
from advisor.training.best import BestWeights


class _QuietProgress(ProgressCallback):
    """A progress bar that does not print every log dict (we log each step for the health rules)."""

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        return None

    def on_prediction_step(
        self, args: Any, state: Any, control: Any, eval_dataloader: Any = None, **kwargs: Any
    ) -> None:
        return None  # no nested bar for each mid-training evaluation


#: rows per evaluation batch (before the split over ranks)
EVAL_BATCH = 16


@dataclass(frozen=True)
class CustomLoss:
    """A Trainer subclass with a loss of its own (distillation's), and the batches that loss reads.

    Attributes:
        trainer: the subclass with its own arguments bound, e.g. ``partial(DistillTrainer, kd=...)``.
        collator: makes each batch from the dataset's rows, the extra columns the loss reads
            included; those columns reach it (the Trainer does not strip what the model does not
            take), so it must drop whatever neither the model nor the loss takes.
    """

    trainer: Callable[..., BucketTrainer]
    collator: Callable[[Sequence[dict[str, Any]]], dict[str, Any]]


def build_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    datasets: tuple[Any, Any | None],
    out: Path,
    hp: Mapping[str, Any],
    batch: tuple[int, int],
    steps: tuple[int, int | Literal["epoch"]],
    callbacks: Sequence[TrainerCallback],
    *,
    seed: int,
    precision: str = "auto",
    torch_compile: bool = False,
    loss: CustomLoss | None = None,
) -> BucketTrainer:
    """A BucketTrainer for one attempt: a rung's fine-tune, a teacher's or a student's.

    Args:
        datasets: (training, evaluation) tokenised datasets; the evaluation one sorted by length,
            or None for no evaluation.
        out: the Trainer's scratch folder.
        hp: resolved hyperparameters (learning_rate, epochs, warmup_ratio, weight_decay).
        batch: (rows per device, gradient accumulation steps).
        steps: (total optimizer steps, steps between evaluations or "epoch" for one at each epoch's end).
        callbacks: the run's callbacks; the metrics are those of its :class:`BestWeights`, if it has one
            (else an evaluation reports the loss alone).
        seed: seeds the data order and dropout.
        precision: ``train.precision`` ("auto", "fp32", "bf16", "fp16"), resolved for this machine.
        torch_compile: compile the model (``train.torch_compile``).
        loss: a Trainer subclass with its own loss; None: the plain cross-entropy of the model.
    """
    trainer_class = loss.trainer if loss is not None else BucketTrainer
    args = training_arguments(
        out,
        hp,
        batch,
        steps,
        evaluate=datasets[1] is not None,
        seed=seed,
        precision=precision,
        torch_compile=torch_compile,
        keep_columns=loss is not None,
    )
    best = next((cb for cb in callbacks if isinstance(cb, BestWeights)), None)
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=datasets[0],
        eval_dataset=datasets[1],  # a rung's is sorted by length: each batch padded to little more than its texts
        data_collator=loss.collator if loss is not None else DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=best.compute_metrics if best is not None else None,
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if not args.disable_tqdm:  # the bar itself draws whatever disable_tqdm says
        trainer.add_callback(_QuietProgress())
    trainer.add_callback(distributed.StopTogether())  # last: sees every other callback's stop
    return trainer


def training_arguments(
    out: Path,
    hp: Mapping[str, Any],
    batch: tuple[int, int],
    steps: tuple[int, int | Literal["epoch"]],
    *,
    evaluate: bool,
    seed: int,
    precision: str,
    torch_compile: bool,
    keep_columns: bool,
) -> TrainingArguments:
    """The TrainingArguments of one attempt (see :func:`build_trainer`); ``keep_columns`` lets the
    dataset's columns the model does not take reach the loss and the collator."""
    ranks, every, dtype = distributed.world_size(), steps[1], precision_here(precision)
    return TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=batch[0],
        gradient_accumulation_steps=batch[1],
        # small evaluation batches: the evaluated rows are sorted by length, and a batch is padded to
        # its longest text, so 16 rows a batch pad far less than 64 (a 128-row sample of the demo's
        # sentences: 5,056 tokens computed at 16 a batch against 9,792 at 64, for 3,695 real ones)
        per_device_eval_batch_size=ranks * max(1, EVAL_BATCH // ranks),  # split over the ranks too
        learning_rate=hp["learning_rate"],
        num_train_epochs=hp["epochs"],
        warmup_steps=int(hp["warmup_ratio"] * steps[0]),
        weight_decay=hp["weight_decay"],
        # evaluations every ``steps[1]`` steps and after the last one (the Trainer adds it when the
        # last step is off the cadence): the best weights are chosen among them
        eval_strategy=("epoch" if every == "epoch" else "steps") if evaluate else "no",
        eval_steps=every if isinstance(every, int) and evaluate else None,
        save_strategy="no",  # the best weights are kept in memory (advisor.training.best), not on disk
        logging_strategy="steps",
        logging_steps=1,  # health rules read every step's loss; cheap on a single device
        report_to="none",
        seed=seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=dtype == "bf16",
        fp16=dtype == "fp16",
        torch_compile=torch_compile,
        remove_unused_columns=not keep_columns,
        # several processes (accelerate launch): each takes its share of every batch, so the
        # global batch, the step count and the schedule are those of one process alone
        accelerator_config={"split_batches": True},
        # a bar on a terminal; none in a log file, where each redraw would be a line of noise
        disable_tqdm=not sys.stderr.isatty(),
    )


def precision_here(precision: str) -> str:
    """``train.precision`` as this machine trains it: "fp32", "bf16" or "fp16" ("auto" resolved)."""
    on_gpu = torch.cuda.is_available()
    return devices.resolve_precision(precision, on_gpu, on_gpu and torch.cuda.is_bf16_supported())
