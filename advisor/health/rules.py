"""Training-health rules: Trainer callbacks that stop a run that is broken, never one that is slow.

A rule here stops a run only when further steps cannot help: the loss or the gradients are
NaN/Inf, the loss has diverged far above where it started, the gradients have vanished, the loss
has not moved from its start by the middle of training, or (``advisor.health.watchdog``) the job has
stalled or the GPU sits idle. A run stopped by one of these is recorded as ``stopped``.

Plateaus and overfitting are not broken runs: they are the business of early stopping on the
criterion metric (:mod:`advisor.training.best`), which keeps the best weights and leaves the run ``ok``.
Two former rules cost healthy runs accuracy and are gone: a loss not falling over two neighbouring
20-step windows (it stopped MiniLM-L3 in a mid-epoch plateau it would have left) and validation
loss rising (it rises while accuracy still improves; on the demo it cost MiniLM-L3 2.5 points).

When a rule fires it records a :class:`RuleFiring` (the rule, the step and a one-line message with
the numbers) and tells the Trainer to stop, without the evaluation or checkpoint the step would
otherwise have triggered. The caller asks :func:`first_firing` afterwards and reports
:func:`steps_saved`.

What each rule reads, and why:

* losses come from the Trainer's logs (``on_log``), which are the losses the Trainer reports,
  including those of a custom ``compute_loss``; the rules work at any ``logging_steps`` but
  react only as often as the Trainer logs;
* gradients are read in ``on_pre_optimizer_step``, every optimizer step, because the logged loss
  cannot show a divergence: with ``logging_nan_inf_filter`` (on by default) the Trainer replaces a
  NaN/Inf loss with the mean of the previous ones. One global gradient norm per step is computed
  once and shared by the rules that need it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from advisor.config.settings import RulesConfig
from advisor.errors import ConfigError
from advisor.health.base import HealthRule, RuleFiring
from advisor.health.watchdog import LowUtilisationRule, StallRule

__all__ = ["HealthRule", "RuleFiring", "first_firing", "health_callbacks", "steps_saved"]


class _GradNorm:
    """Global L2 norm of the gradients, computed at most once per optimizer step.

    Shared by the rules that need it so that a step pays for one reduction, not one per rule.
    Returns None when no parameter holds a gradient (frameworks that shard gradients away from
    ``p.grad``): a rule must not read "no gradient visible" as "gradient zero".
    """

    def __init__(self) -> None:
        self._step = -1
        self._value: float | None = None

    def __call__(self, model: torch.nn.Module | None, step: int) -> float | None:
        if step != self._step:
            self._step = step
            grads = [p.grad.detach() for p in model.parameters() if p.grad is not None] if model is not None else []
            if not grads:
                self._value = None
            elif hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6: one fused reduction
                self._value = float(torch.nn.utils.get_total_norm(grads))
            else:
                norms = torch.stack([torch.linalg.vector_norm(g).to(grads[0].device) for g in grads])
                self._value = float(torch.linalg.vector_norm(norms))
        return self._value


class NanLossRule(HealthRule):
    """Stop when the loss or the gradients become NaN or Inf.

    Reads the global gradient norm every optimizer step (a NaN/Inf loss gives non-finite
    gradients, and the Trainer's logged loss hides NaN by default), and the logged loss when it
    is visible. Under fp16 loss scaling an overflowing step is skipped on purpose and the scale
    lowered, so there the rule waits for ``fp16_patience`` non-finite steps in a row; elsewhere one
    is enough, since the optimizer has then written NaN into the weights.
    """

    name = "nan_loss"

    def __init__(self, fp16_patience: int = 10, grad_norm: _GradNorm | None = None) -> None:
        super().__init__()
        if fp16_patience < 1:
            raise ConfigError(f"NanLossRule fp16_patience must be >= 1. Got {fp16_patience} instead.")
        self.fp16_patience = fp16_patience
        self._grad_norm = grad_norm if grad_norm is not None else _GradNorm()
        self._patience = 1
        self._bad: list[int] = []

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        super().on_train_begin(args, state, control, **kwargs)
        self._patience = self.fp16_patience if getattr(args, "fp16", False) else 1
        self._bad = []

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ):
        step = state.global_step + 1  # the step being taken
        norm = self._grad_norm(kwargs.get("model"), step)
        if norm is None or math.isfinite(norm):
            self._bad = []
            return
        self._bad.append(step)
        if len(self._bad) >= self._patience:
            self._fire(
                control,
                step,
                f"non-finite gradients: gradient norm {norm} at step {step}"
                + (f" ({len(self._bad)} steps in a row since step {self._bad[0]})" if len(self._bad) > 1 else ""),
                grad_norm=norm,
                first_step=self._bad[0],
            )

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        loss = (kwargs.get("logs") or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self._fire(control, state.global_step, f"non-finite loss: {loss} at step {state.global_step}", loss=loss)


Span = tuple[int, int, float]  # (first step, last step, mean loss) of one logged loss


class _WindowedLossRule(HealthRule):
    """Base of the rules that compare the latest window of training loss with a reference window.

    A window is the shortest run of logged losses covering at least ``window`` steps, so the rules
    work at any logging cadence (each logged loss is the mean over the steps since the previous
    log and is weighted by their number). The reference is the first full window after the
    learning-rate warm-up, since a loss barely moves while the rate is near zero. Subclasses
    implement :meth:`_judge`, called at every log once a full window exists.
    """

    def __init__(self, window: int) -> None:
        super().__init__()
        if window < 1:
            raise ConfigError(f"The rules.loss_window setting must be >= 1. Got {window} instead.")
        self.window = window
        # a span covers >= 1 step, so 2 * window spans always cover two windows
        self._spans: deque[Span] = deque(maxlen=2 * window)
        self._last_logged = 0
        self._warmup = 0
        self._max_steps = 0
        self._reference: list[Span] | None = None
        self._start: list[Span] | None = None  # the first full window, warm-up included: the run's start
        self._first_loss: float | None = None  # the first logged loss: the model before training

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        super().on_train_begin(args, state, control, **kwargs)
        self._spans.clear()
        self._reference = self._start = self._first_loss = None
        self._last_logged = state.global_step  # non-zero when resuming from a checkpoint
        self._max_steps = int(state.max_steps or 0)
        get_warmup = getattr(args, "get_warmup_steps", None)
        self._warmup = int(get_warmup(state.max_steps)) if callable(get_warmup) else 0

    def _take(self, spans: list[Span]) -> tuple[list[Span], list[Span]]:
        """Split off from the end of ``spans`` the shortest suffix covering >= window steps."""
        covered, i = 0, len(spans)
        while i > 0 and covered < self.window:
            i -= 1
            covered += spans[i][1] - spans[i][0] + 1
        return (spans[i:], spans[:i]) if covered >= self.window else ([], spans)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        loss = (kwargs.get("logs") or {}).get("loss")
        step = state.global_step
        if loss is None or step <= self._last_logged:
            return
        self._first_loss = float(loss) if self._first_loss is None else self._first_loss
        self._spans.append((self._last_logged + 1, step, float(loss)))
        self._last_logged = step
        recent, rest = self._take(list(self._spans))
        self._start = self._start or recent or None
        if self._reference is None:
            previous, _ = self._take(rest)
            if recent and previous and previous[0][0] > self._warmup:
                self._reference = previous
        if recent and math.isfinite(recent_mean := _weighted_mean(recent)):  # NaN is the NaN rule's business
            self._judge(control, step, recent, recent_mean)

    def _judge(self, control: TrainerControl, step: int, recent: list[Span], recent_mean: float) -> None:
        raise NotImplementedError


class LossNotDecreasingRule(_WindowedLossRule):
    """Stop a run whose training loss has not moved from its start by ``min_progress`` of training.

    From that point on, at every log, the mean loss of the latest window must be at least
    ``min_delta`` (relative) below the reference window's or below the first window's (the start,
    warm-up included). A run that learns has long since done so by then; one that has not is
    training nothing (a learning rate of zero or far too low, frozen weights, labels that carry no
    signal). Judging earlier stops slow starters (MiniLM-L3 on 4,000 sentiment sentences sat on a
    plateau for a quarter of its steps, then learned); judging against the reference alone stopped
    a distilled student that matched its teacher within the warm-up, then levelled off.
    """

    name = "loss_not_decreasing"

    def __init__(self, window: int, min_delta: float, min_progress: float = 0.5) -> None:
        super().__init__(window)
        if min_delta < 0:
            raise ConfigError(f"The rules.loss_min_delta setting must be >= 0. Got {min_delta} instead.")
        if not 0 <= min_progress <= 1:
            raise ConfigError(f"The rules.loss_min_progress setting must be in [0, 1]. Got {min_progress} instead.")
        self.min_delta = min_delta
        self.min_progress = min_progress

    def _judge(self, control: TrainerControl, step: int, recent: list[Span], recent_mean: float) -> None:
        if self._reference is None or step < self.min_progress * self._max_steps:
            return
        ref_mean, start_mean = _weighted_mean(self._reference), _weighted_mean(self._start or self._reference)
        fell = [before - recent_mean >= self.min_delta * abs(before) for before in (ref_mean, start_mean)]
        if not any(fell):
            self._fire(
                control,
                step,
                f"loss not decreasing: mean loss {recent_mean:.4g} vs {ref_mean:.4g} (steps {recent[0][0]}-"
                f"{recent[-1][1]} vs steps {self._reference[0][0]}-{self._reference[-1][1]}; needed a "
                f"{self.min_delta:.2%} fall below it or the start's {start_mean:.4g} by {self.min_progress:.0%} of training)",
                recent_loss=recent_mean,
                previous_loss=ref_mean,
                min_delta=self.min_delta,
            )


class DivergenceRule(_WindowedLossRule):
    """Stop a run whose mean training loss has risen to ``factor`` times its first loss, and a nat above it.

    The first logged loss is the untrained model's (about ln C for a new C-class head). A learning
    rate far too high can leave the loss finite but huge (Adam with LayerNorm stays finite at
    lr 1e4), which the NaN rule never sees. The absolute margin keeps a run that starts from a
    small loss (a model already fine-tuned) from firing on noise. A healthy run's windowed loss
    never triples; a too-hot run that merely collapses to the majority class stays near its start
    and is left to the metric.
    """

    name = "divergence"

    def __init__(self, window: int, factor: float, margin: float = 1.0) -> None:
        super().__init__(window)
        if not factor > 1:
            raise ConfigError(f"The rules.divergence_factor setting must be above 1. Got {factor} instead.")
        self.factor = factor
        self.margin = margin

    def _judge(self, control: TrainerControl, step: int, recent: list[Span], recent_mean: float) -> None:
        start = self._first_loss
        if start is None or not math.isfinite(start):
            return
        if recent_mean > self.factor * start and recent_mean - start >= self.margin:
            self._fire(
                control,
                step,
                f"divergence: mean loss {recent_mean:.4g} over steps {recent[0][0]}-{recent[-1][1]} vs "
                f"{start:.4g} at the start (limit {self.factor:g}x and +{self.margin:g})",
                recent_loss=recent_mean,
                start_loss=start,
                factor=self.factor,
            )


def _weighted_mean(spans: list[Span]) -> float:
    steps = sum(b - a + 1 for a, b, _ in spans)
    return sum((b - a + 1) * loss for a, b, loss in spans) / steps


class VanishingGradientRule(HealthRule):
    """Stop when the global gradient norm stays below ``threshold`` for ``window`` steps in a row."""

    name = "vanishing_gradient"

    def __init__(self, threshold: float, window: int, grad_norm: _GradNorm | None = None) -> None:
        super().__init__()
        if threshold < 0:
            raise ConfigError(f"The rules.vanishing_grad_norm setting must be >= 0. Got {threshold} instead.")
        if window < 1:
            raise ConfigError(f"The rules.loss_window setting must be >= 1. Got {window} instead.")
        self.threshold = threshold
        self.window = window
        self._grad_norm = grad_norm if grad_norm is not None else _GradNorm()
        self._low: list[float] = []
        self._first = 0

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        super().on_train_begin(args, state, control, **kwargs)
        self._low = []

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ):
        step = state.global_step + 1
        norm = self._grad_norm(kwargs.get("model"), step)
        if norm is None or not norm < self.threshold:  # NaN is not "small": the NaN rule's business
            self._low = []
            return
        if not self._low:
            self._first = step
        self._low.append(norm)
        if len(self._low) >= self.window:
            self._fire(
                control,
                step,
                f"vanishing gradients: gradient norm below {self.threshold:.3g} for {len(self._low)} steps "
                f"({self._first}-{step}; largest {max(self._low):.3g})",
                max_grad_norm=max(self._low),
                threshold=self.threshold,
                first_step=self._first,
            )


def health_callbacks(cfg: RulesConfig, on_gpu: bool) -> list[TrainerCallback]:
    """The broken-run rules configured in ``cfg``, ready for ``Trainer(callbacks=...)``.

    Empty when ``cfg.enabled`` is false. The low-utilisation rule is included on CPU too, inactive,
    so that a report can say it did not watch anything. Early stopping on the metric is not here:
    it needs the metric and the run's planned evaluations (:class:`advisor.training.best.EarlyStopping`).
    """
    if not cfg.enabled:
        return []
    grad_norm = _GradNorm()
    return [
        NanLossRule(grad_norm=grad_norm),
        DivergenceRule(cfg.loss_window, cfg.divergence_factor),
        LossNotDecreasingRule(cfg.loss_window, cfg.loss_min_delta, cfg.loss_min_progress),
        VanishingGradientRule(cfg.vanishing_grad_norm, cfg.loss_window, grad_norm=grad_norm),
        StallRule(cfg.stall_seconds),
        LowUtilisationRule(cfg.low_gpu_util_percent, on_gpu),
    ]


def first_firing(callbacks: Iterable[TrainerCallback]) -> RuleFiring | None:
    """The earliest firing among the health rules in ``callbacks`` (other callbacks are ignored)."""
    firings = [cb.firing for cb in callbacks if isinstance(cb, HealthRule) and cb.firing is not None]
    return min(firings, key=lambda f: f.step) if firings else None


def steps_saved(firing: RuleFiring | None, total_steps: int) -> int:
    """Optimizer steps not run because ``firing`` stopped the run, against running all ``total_steps``."""
    return 0 if firing is None else max(0, total_steps - firing.step)
