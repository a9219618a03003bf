"""One run's training attempts: the Trainer with fresh watchers, and the restart after an out-of-memory error.

:func:`advisor.training.train.train_run` prepares what every attempt shares (:class:`Setup`) and holds the
model being trained (:class:`Held`); :func:`fit_with_retry` builds a Trainer with fresh health
rules, best-weight keeping and early stopping, trains, and on an out-of-memory error that a smaller
batch can avoid reloads the same weights and tries again at half the rows per device with twice
the gradient accumulation. :func:`train_attempt` is one attempt, distill's students' too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from advisor.config.settings import Config
from advisor.errors import GreenladderError
from advisor.health.rules import health_callbacks
from advisor.health.watchdog import Stalled
from advisor.training.batching import BucketTrainer, first_line, is_out_of_memory, release_memory, smaller_batch
from advisor.training.best import BestWeights, EarlyStopping, MetricsFn, patience_for
from advisor.training.counting import MeteringCallback
from advisor.training.hf_trainer import build_trainer
from advisor.training.stopping import end_watchdogs, watch_evaluations


@dataclass(frozen=True)
class Setup:
    """What every attempt of one run shares: the rows, the step plan, the settings and the watchers.

    Attributes:
        train: the tokenised training rows.
        validation: the tokenised rows scored at each evaluation, sorted by length.
        order: evaluation row ``i`` is row ``order[i]`` of the scored rows.
        sample: the validation rows scored during training (a stratified sample), or None: all of them.
        steps: (total optimizer steps, steps between evaluations).
    """

    run_id: str
    config: Config
    hp: Mapping[str, Any]
    train: Any
    validation: Any
    order: np.ndarray
    sample: list[int] | None
    steps: tuple[int, int]
    out: Path
    metering: MeteringCallback
    extra: Sequence[TrainerCallback]
    metrics_fn: MetricsFn
    num_labels: int
    say: Callable[[str], None]


@dataclass
class Held:
    """The model being trained and its batch: an out-of-memory error replaces the model and halves the batch."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    batch: tuple[int, int]


@dataclass(frozen=True)
class Fitted:
    """The last attempt: its Trainer, best-weight keeper and callbacks, and why it failed (or None)."""

    trainer: BucketTrainer
    best: BestWeights
    callbacks: list[TrainerCallback]
    error: str | None


def fit_with_retry(
    held: Held,
    load: Callable[[], tuple[PreTrainedModel, PreTrainedTokenizerBase]],
    s: Setup,
    name: str,
    details: dict[str, Any],
) -> Fitted:
    """Train until an attempt does not run out of memory. Each one that does is recorded in
    ``details["oom_retries"]``; the next starts from the same weights (``load``) at half the rows per
    device with twice the gradient accumulation."""
    while True:
        trainer, best, callbacks = _attempt(held, s)
        batch = held.batch
        s.say(
            f"{s.run_id}: fine-tuning {name} ({s.steps[0]} steps, lr {s.hp['learning_rate']:.2g}, "
            f"{s.hp['epochs']:g} epochs, {len(s.train)} examples"
            + (f", batch {batch[0]} x {batch[1]} accumulated" if batch[1] > 1 else "")
            + ")"
        )
        smaller, why = _train_once(trainer, callbacks, batch)
        if smaller is None:
            return Fitted(trainer, best, callbacks, why)
        details.setdefault("oom_retries", []).append({"batch_size": batch[0], "accumulation": batch[1], "error": why})
        s.say(f"{s.run_id}: out of memory at batch {batch[0]}; again at {smaller[0]} x {smaller[1]} accumulated")
        s.metering.close()  # its hook holds the old model; the next Trainer attaches it to the new one
        del trainer, held.model
        release_memory()
        held.batch = smaller
        held.model, held.tokenizer = load()


def _attempt(held: Held, s: Setup) -> tuple[BucketTrainer, BestWeights, list[TrainerCallback]]:
    """One attempt's Trainer, with fresh health rules, best-weight keeper and early stopping."""
    t, r, metric = s.config.train, s.config.rules, s.config.criteria.metric
    if t.freeze_embeddings:
        held.model.get_input_embeddings().requires_grad_(False)
    rules = health_callbacks(r, on_gpu=torch.cuda.is_available())
    best = BestWeights(metric, s.metrics_fn, s.order)
    watch_evaluations(s.extra, best, s.num_labels)  # the pruner compares trials on the rows each evaluation scored
    patience = patience_for(math.ceil(s.steps[0] / s.steps[1]), r.early_stop_share, r.early_stop_min_patience)
    stopper = [EarlyStopping(metric, patience)] if r.enabled else []
    callbacks = [s.metering, best, *rules, *stopper, *s.extra]
    trainer = build_trainer(
        held.model,
        held.tokenizer,
        (s.train, s.validation),
        s.out,
        s.hp,
        held.batch,
        s.steps,
        callbacks,
        seed=t.seed,
        precision=t.precision,
        torch_compile=t.torch_compile,
    )
    return trainer, best, callbacks


def _train_once(
    trainer: BucketTrainer, callbacks: Sequence[TrainerCallback], batch: tuple[int, int]
) -> tuple[tuple[int, int] | None, str | None]:
    """:func:`train_attempt`, with an error other than a halvable out-of-memory one recorded as
    ``(None, why it failed)``; ``(None, None)`` when the attempt ended."""
    try:
        retry = train_attempt(trainer, callbacks, batch)
    except GreenladderError:
        raise
    except Exception as exc:  # a crash in one run must not end the climb; record it
        return None, f"training raised {type(exc).__name__}: {first_line(exc)}"
    return retry if retry is not None else (None, None)


def train_attempt(
    trainer: BucketTrainer, callbacks: Sequence[TrainerCallback], batch: tuple[int, int]
) -> tuple[tuple[int, int], str] | None:
    """Train one attempt at ``batch`` (rows per device, accumulation); its watchdogs end with it.

    Returns:
        ``(smaller batch, the error's first line)`` when it ran out of memory at a batch that can be
        halved (the caller restarts from the first weights at it); None when it ended, a hung step
        included (the stall rule holds the firing). Any other error is raised.
    """
    try:
        try:
            trainer.train()
        finally:  # watchdogs end with the run, also when it raised; no Stalled after this
            end_watchdogs(callbacks)
    except Stalled:
        pass
    except Exception as exc:
        # only plain data leaves this block: the exception's traceback pins the failed step's tensors
        smaller = smaller_batch(*batch) if is_out_of_memory(exc) else None
        if smaller is None:
            raise
        return smaller, first_line(exc)
    return None
