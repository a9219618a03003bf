"""The Hugging Face Trainer as greenladder sets it up for one training attempt.

Length-bucketed training batches (:class:`advisor.batching.BucketTrainer`), an evaluation set
sorted by length, a cadence of evaluations that feed best-weight keeping, early stopping and
pruning, no checkpoints on disk, a loss logged every step for the health rules, and a progress bar
that does not print every log.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from advisor import devices, distributed
from advisor.batching import BucketTrainer
from advisor.best import BestWeights
from advisor.config import Config


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


def build_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    datasets: tuple[Any, Any],
    out: Path,
    hp: Mapping[str, Any],
    batch: tuple[int, int],
    steps: tuple[int, int],
    callbacks: Sequence[TrainerCallback],
    config: Config,
) -> BucketTrainer:
    """A BucketTrainer for one attempt.

    Args:
        datasets: (training, evaluation) tokenised datasets; the evaluation one sorted by length.
        out: the Trainer's scratch folder.
        hp: resolved hyperparameters (learning_rate, epochs, warmup_ratio, weight_decay).
        batch: (rows per device, gradient accumulation steps).
        steps: (total optimizer steps, steps between evaluations).
        callbacks: must include the run's :class:`BestWeights`, whose ``compute_metrics`` is used.
    """
    t, on_gpu = config.train, torch.cuda.is_available()
    ranks = distributed.world_size()
    precision = devices.resolve_precision(t.precision, on_gpu, on_gpu and torch.cuda.is_bf16_supported())
    args = TrainingArguments(
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
        eval_strategy="steps",
        eval_steps=steps[1],
        save_strategy="no",  # the best weights are kept in memory (advisor.best), not on disk
        logging_strategy="steps",
        logging_steps=1,  # health rules read every step's loss; cheap on a single device
        report_to="none",
        seed=t.seed,
        use_cpu=not on_gpu,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        torch_compile=t.torch_compile,
        # several processes (accelerate launch): each takes its share of every batch, so the
        # global batch, the step count and the schedule are those of one process alone
        accelerator_config={"split_batches": True},
        # a bar on a terminal; none in a log file, where each redraw would be a line of noise
        disable_tqdm=not sys.stderr.isatty(),
    )
    trainer = BucketTrainer(
        model=model,
        args=args,
        train_dataset=datasets[0],
        eval_dataset=datasets[1],  # sorted by length: each batch padded to little more than its texts
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=next(cb for cb in callbacks if isinstance(cb, BestWeights)).compute_metrics,
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if not args.disable_tqdm:  # the bar itself draws whatever disable_tqdm says
        trainer.add_callback(_QuietProgress())
    trainer.add_callback(distributed.StopTogether())  # last: sees every other callback's stop
    return trainer
