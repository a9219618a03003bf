"""Training-health rules: Trainer callbacks that stop a run as soon as it is clearly going nowhere.

Every rule is a small :class:`transformers.TrainerCallback`. When one fires it records a
:class:`RuleFiring` (the rule, the step and a one-line message with the numbers) and tells the
Trainer to stop, without the evaluation or checkpoint the step would otherwise have triggered:
a run that has diverged or stalled is not worth another forward pass. The caller asks
:func:`first_firing` afterwards and reports :func:`steps_saved`.

The rules follow the built-in rules of cloud training debuggers (loss not decreasing,
overfitting, vanishing gradients, stalled job, low GPU utilisation) plus a NaN/Inf guard.

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

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from advisor.config import RulesConfig
from advisor.errors import ConfigError


@dataclass(frozen=True)
class RuleFiring:
    """One rule stopping one run.

    Attributes:
        rule: the rule's name, e.g. "loss_not_decreasing".
        step: the optimizer step at which the rule fired (the last completed step for a stall).
        message: one line with the numbers, e.g. "loss not decreasing: mean loss 0.693 over steps
            21-40 vs 0.694 over steps 1-20 (needed a 0.10% decrease)".
        numbers: the figures behind the message, for the ledger and the report.
    """

    rule: str
    step: int
    message: str
    numbers: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "numbers", {k: float(v) for k, v in self.numbers.items()})


class HealthRule(TrainerCallback):
    """Base of the rules: records the first firing and keeps the Trainer stopping.

    Subclasses call :meth:`_fire`. After a firing, the step's pending evaluation and checkpoint are
    cancelled on every later event, because the Trainer's default flow sets them in ``on_step_end``
    and ``on_epoch_end`` after a rule that fired earlier in the step already asked to stop.
    """

    name: ClassVar[str] = "rule"

    def __init__(self) -> None:
        self.firing: RuleFiring | None = None
        #: why the rule watches nothing in this run (e.g. no GPU), or None when it is active
        self.inactive_reason: str | None = None

    def _fire(self, control: TrainerControl, step: int, message: str, **numbers: float) -> None:
        if self.firing is None:
            self.firing = RuleFiring(self.name, step, message, numbers)
        self._halt(control)

    def _halt(self, control: TrainerControl) -> None:
        if self.firing is not None:
            control.should_training_stop = True
            control.should_evaluate = False
            control.should_save = False

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self.firing = None

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self._halt(control)

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self._halt(control)


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


class LossNotDecreasingRule(HealthRule):
    """Stop when the mean training loss of the last window is not lower than that of the first window.

    A window is the shortest run of logged losses covering at least ``window`` steps, so the rule
    works at any logging cadence (each logged loss is the mean over the steps since the previous
    log and is weighted by their number). It waits until the learning-rate warmup is over: the
    first (reference) window must start after it, since a loss barely moves while the rate is near
    zero. Comparing with the first window rather than the one just before catches runs that never
    learn without stopping runs that learned and then levelled off: on fine-tuning data the loss of
    two neighbouring 20-step windows is often equal within noise while the run is still improving
    (the demo's MiniLM-L6 was stopped at step 85 of 195 with 0.764 accuracy when this compared
    neighbouring windows).
    """

    name = "loss_not_decreasing"

    def __init__(self, window: int, min_delta: float) -> None:
        super().__init__()
        if window < 1:
            raise ConfigError(f"The rules.loss_window setting must be >= 1. Got {window} instead.")
        if min_delta < 0:
            raise ConfigError(f"The rules.loss_min_delta setting must be >= 0. Got {min_delta} instead.")
        self.window = window
        self.min_delta = min_delta
        # (first step, last step, mean loss) of each logged span; a span covers >= 1 step, so
        # 2 * window spans always cover two windows
        self._spans: deque[tuple[int, int, float]] = deque(maxlen=2 * window)
        self._last_logged = 0
        self._warmup = 0
        #: the first full window after warm-up: every later window is compared with it
        self._reference: list[tuple[int, int, float]] | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        super().on_train_begin(args, state, control, **kwargs)
        self._spans.clear()
        self._reference = None
        self._last_logged = state.global_step  # non-zero when resuming from a checkpoint
        get_warmup = getattr(args, "get_warmup_steps", None)
        self._warmup = int(get_warmup(state.max_steps)) if callable(get_warmup) else 0

    def _take(self, spans: list[tuple[int, int, float]]) -> tuple[list[tuple[int, int, float]], list]:
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
        self._spans.append((self._last_logged + 1, step, float(loss)))
        self._last_logged = step
        recent, rest = self._take(list(self._spans))
        if self._reference is None:
            previous, _ = self._take(rest)
            if not recent or not previous or previous[0][0] <= self._warmup:
                return
            self._reference = previous
        previous = self._reference
        if not recent:
            return
        recent_mean, previous_mean = _weighted_mean(recent), _weighted_mean(previous)
        if not (math.isfinite(recent_mean) and math.isfinite(previous_mean)):
            return  # the NaN rule's business
        if previous_mean - recent_mean < self.min_delta * abs(previous_mean):
            self._fire(
                control,
                step,
                f"loss not decreasing: mean loss {recent_mean:.4g} over steps {recent[0][0]}-{recent[-1][1]} "
                f"vs {previous_mean:.4g} over steps {previous[0][0]}-{previous[-1][1]} "
                f"(needed a {self.min_delta:.2%} decrease)",
                recent_loss=recent_mean,
                previous_loss=previous_mean,
                min_delta=self.min_delta,
            )


def _weighted_mean(spans: list[tuple[int, int, float]]) -> float:
    steps = sum(b - a + 1 for a, b, _ in spans)
    return sum((b - a + 1) * loss for a, b, loss in spans) / steps


class OverfitRule(HealthRule):
    """Stop when the validation loss rises for ``patience`` evaluations in a row while the training loss falls.

    The training loss at an evaluation is the mean of the losses logged since the previous
    evaluation, so the Trainer must log at least as often as it evaluates for the rule to act.
    """

    name = "overfit"

    def __init__(self, patience: int) -> None:
        super().__init__()
        if patience < 1:
            raise ConfigError(f"The rules.overfit_patience setting must be >= 1. Got {patience} instead.")
        self.patience = patience
        self._train_losses: list[float] = []
        # (step, validation loss, training loss or None) per evaluation
        self._evals: list[tuple[int, float, float | None]] = []
        self._rising = 0

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        super().on_train_begin(args, state, control, **kwargs)
        self._train_losses, self._evals, self._rising = [], [], 0

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        loss = (kwargs.get("logs") or {}).get("loss")
        if loss is not None and math.isfinite(loss):
            self._train_losses.append(float(loss))

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        val = (kwargs.get("metrics") or {}).get("eval_loss")
        if val is None or not math.isfinite(val):
            return
        train = sum(self._train_losses) / len(self._train_losses) if self._train_losses else None
        self._train_losses = []
        self._evals.append((state.global_step, float(val), train))
        if len(self._evals) < 2:
            return
        (_, prev_val, prev_train), (_, cur_val, cur_train) = self._evals[-2:]
        falling = prev_train is not None and cur_train is not None and cur_train < prev_train
        self._rising = self._rising + 1 if cur_val > prev_val and falling else 0
        if self._rising >= self.patience:
            seen = self._evals[-(self.patience + 1) :]
            vals = " -> ".join(f"{v:.4g}" for _, v, _ in seen)
            trains = " -> ".join(f"{t:.4g}" for _, _, t in seen if t is not None)
            self._fire(
                control,
                state.global_step,
                f"overfitting: validation loss rose for {self.patience} evaluations in a row ({vals}, steps "
                f"{seen[0][0]}-{seen[-1][0]}) while training loss fell ({trains})",
                val_loss=cur_val,
                val_loss_start=seen[0][1],
                train_loss=cur_train if cur_train is not None else math.nan,
                train_loss_start=seen[0][2] if seen[0][2] is not None else math.nan,
            )


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


class StallRule(HealthRule):
    """Stop a run in which no step has completed for ``seconds``.

    A daemon watchdog thread notices the stall and sets :attr:`stalled`; the next callback the
    Trainer calls stops training. Evaluation batches, logs and checkpoints count as progress, so a
    long evaluation is not a stall. A run hung for good never calls a callback again: pass
    ``on_stall`` (called from the watchdog thread with the firing) to act on that yourself, e.g.
    ``lambda f: _thread.interrupt_main()``.
    """

    name = "stall"

    def __init__(self, seconds: float, on_stall: Callable[[RuleFiring], None] | None = None) -> None:
        super().__init__()
        if not seconds > 0:
            raise ConfigError(f"The rules.stall_seconds setting must be > 0. Got {seconds} instead.")
        self.seconds = seconds
        self.on_stall = on_stall
        #: True once the watchdog has seen a stall (readable from any thread)
        self.stalled = False
        self._last_beat = time.monotonic()
        self._last_step = 0
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _watch(self) -> None:
        poll = min(1.0, self.seconds / 5)
        while not self._done.wait(poll):
            idle = time.monotonic() - self._last_beat
            if idle > self.seconds:
                self.firing = RuleFiring(
                    self.name,
                    self._last_step,
                    f"stalled: no training step completed for {idle:.1f} s after step {self._last_step} "
                    f"(limit {self.seconds:g} s)",
                    {"idle_seconds": idle, "limit_seconds": self.seconds},
                )
                self.stalled = True
                if self.on_stall is not None:
                    self.on_stall(self.firing)
                return

    def _beat(self, state: TrainerState, control: TrainerControl) -> None:
        self._halt(control)
        if not self.stalled:
            self._last_beat = time.monotonic()
            self._last_step = state.global_step

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        super().on_train_begin(args, state, control, **kwargs)
        self.stalled = False
        self._last_beat, self._last_step = time.monotonic(), state.global_step
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="greenladder-stall-watchdog", daemon=True)
        self._thread.start()

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self.stop()

    def stop(self) -> None:
        """End the watchdog. The Trainer's ``on_train_end`` does it; call it yourself when ``train()`` raised."""
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    # Events that only check for a stall (nothing has completed yet) ...
    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self._halt(control)

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ):
        self._halt(control)

    # ... and events that are progress.
    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self._beat(state, control)

    def on_substep_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self._beat(state, control)

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self._beat(state, control)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self._beat(state, control)

    def on_prediction_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self._beat(state, control)

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self._beat(state, control)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self._beat(state, control)


class LowUtilisationRule(HealthRule):
    """Stop a GPU run whose GPU sits mostly idle (a data-loading or CPU bottleneck burning GPU-hours).

    Samples NVML utilisation (the share of time a kernel ran) at most every ``interval_s`` seconds
    at step ends, after ``warmup_s`` seconds of start-up, and fires when the mean of the last
    ``samples`` readings is below ``percent``. On CPU, or without NVML (``nvidia-ml-py``), the rule
    is inactive and says why in :attr:`inactive_reason`. ``sampler`` replaces NVML (tests, other
    accelerators): a callable returning the utilisation in percent.
    """

    name = "low_gpu_utilisation"

    def __init__(
        self,
        percent: float,
        on_gpu: bool,
        *,
        samples: int = 30,
        interval_s: float = 2.0,
        warmup_s: float = 60.0,
        sampler: Callable[[], float] | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= percent <= 100:
            raise ConfigError(f"The rules.low_gpu_util_percent setting must be in 0-100. Got {percent} instead.")
        if samples < 1:
            raise ConfigError(f"LowUtilisationRule samples must be >= 1. Got {samples} instead.")
        self.percent = percent
        self.on_gpu = on_gpu
        self.interval_s = interval_s
        self.warmup_s = warmup_s
        self._given_sampler = sampler
        self._sampler: Callable[[], float] | None = None
        self._shutdown: Callable[[], None] | None = None
        self._readings: deque[float] = deque(maxlen=samples)
        self._start = self._last_sample = 0.0
        if not on_gpu:
            self.inactive_reason = "inactive: training on CPU (this rule watches GPU utilisation)"

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        super().on_train_begin(args, state, control, **kwargs)
        self._readings.clear()
        self._start = self._last_sample = time.monotonic()
        if not self.on_gpu:
            return
        if self._given_sampler is not None:
            self._sampler, self.inactive_reason = self._given_sampler, None
            return
        try:
            self._sampler, self._shutdown = _nvml_sampler()
            self.inactive_reason = None
        except Exception as exc:  # no pynvml, no driver, MIG slice without counters ...
            self._sampler = None
            self.inactive_reason = f"inactive: cannot read GPU utilisation through NVML ({type(exc).__name__}: {exc})"

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        super().on_step_end(args, state, control, **kwargs)
        now = time.monotonic()
        if self._sampler is None or now - self._start < self.warmup_s or now - self._last_sample < self.interval_s:
            return
        self._last_sample = now
        self._readings.append(float(self._sampler()))
        if len(self._readings) == self._readings.maxlen:
            mean = sum(self._readings) / len(self._readings)
            if mean < self.percent:
                self._fire(
                    control,
                    state.global_step,
                    f"low GPU utilisation: mean {mean:.1f}% over the last {len(self._readings)} readings, "
                    f"below {self.percent:g}%",
                    mean_util_percent=mean,
                    threshold_percent=self.percent,
                )

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if self._shutdown is not None:
            self._shutdown()
            self._shutdown = None


def _nvml_sampler() -> tuple[Callable[[], float], Callable[[], None]]:
    """A utilisation reader for the GPU torch trains on, and the NVML shutdown to call after."""
    import pynvml

    pynvml.nvmlInit()
    try:
        index = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        # by PCI address where torch knows it: NVML numbers GPUs physically, torch after CUDA_VISIBLE_DEVICES
        domain, bus, device = (getattr(props, f"pci_{part}_id", None) for part in ("domain", "bus", "device"))
        handle = None
        if domain is not None and bus is not None and device is not None:
            with contextlib.suppress(pynvml.NVMLError):
                handle = pynvml.nvmlDeviceGetHandleByPciBusId(f"{domain:08x}:{bus:02x}:{device:02x}.0")
        if handle is None:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetUtilizationRates(handle)  # fail now, not mid-run, where it is unsupported
    except Exception:
        pynvml.nvmlShutdown()
        raise

    def sample() -> float:
        return float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)

    return sample, pynvml.nvmlShutdown


def health_callbacks(cfg: RulesConfig, on_gpu: bool) -> list[TrainerCallback]:
    """The training-health rules configured in ``cfg``, ready for ``Trainer(callbacks=...)``.

    Empty when ``cfg.enabled`` is false. The low-utilisation rule is included on CPU too, inactive,
    so that a report can say it did not watch anything.
    """
    if not cfg.enabled:
        return []
    grad_norm = _GradNorm()
    return [
        NanLossRule(grad_norm=grad_norm),
        LossNotDecreasingRule(cfg.loss_window, cfg.loss_min_delta),
        OverfitRule(cfg.overfit_patience),
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
