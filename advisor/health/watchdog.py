"""Rules that watch the machine rather than the numbers: a stalled job and an idle GPU.

Both are :class:`~advisor.health.rules.HealthRule` callbacks and fire like the other broken-run rules.
The stall rule's watchdog does more than set a flag: a step that hangs never calls a callback
again, so the watchdog interrupts the training thread itself (see :class:`StallRule`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import Any

import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from advisor.errors import ConfigError
from advisor.health.base import HealthRule, RuleFiring

#: the signal the watchdog sends the training thread; its default action would end the process,
#: so the handler is only ever installed while a run is being watched, and the previous one restored
_SIGNAL = getattr(signal, "SIGUSR1", None)


class Stalled(BaseException):
    """Raised in the training thread when the stall watchdog ends a hung step.

    A ``BaseException``, like ``KeyboardInterrupt``, so that library code that catches
    ``Exception`` around a step does not swallow it; :func:`advisor.training.train.train_run` catches it and
    records the run as stopped.
    """

    def __init__(self, firing: RuleFiring) -> None:
        super().__init__(firing.message)
        self.firing = firing


class StallRule(HealthRule):
    """Stop a run in which no step has completed for ``seconds``, also when the step never returns.

    A daemon watchdog thread notices the stall. Training on the main thread (the ``advise`` CLI),
    the watchdog sends it a signal whose handler raises :class:`Stalled`: a real signal wakes a
    thread blocked in ``sleep``, a queue wait or a socket read (``_thread.interrupt_main`` would
    not: it only raises once the thread runs Python code again), and the exception unwinds the
    Trainer, which the caller catches. A step stuck inside C code that ignores signals (a hung
    collective) is not interrupted; a child process per trial would be, at the price of moving
    the model, data and metering across a process boundary, which no hang seen so far justified.
    Off the main thread, or without ``pthread_kill`` (Windows), the rule falls back to setting
    :attr:`stalled`, which the next callback turns into a stop.

    Evaluation batches, logs and checkpoints count as progress, so a long evaluation is not a stall.
    """

    name = "stall"

    def __init__(self, seconds: float, interrupt: bool = True) -> None:
        super().__init__()
        if not seconds > 0:
            raise ConfigError(f"The rules.stall_seconds setting must be > 0. Got {seconds} instead.")
        self.seconds = seconds
        self.interrupt = interrupt
        #: True once the watchdog has seen a stall (readable from any thread)
        self.stalled = False
        self._last_beat = time.monotonic()
        self._last_step = 0
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._armed = False  # a signal may be sent and raise; only while a run is watched
        self._target: int | None = None
        self._previous: Any = None

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
                with self._lock:
                    if self._armed and self._target is not None and _SIGNAL is not None:
                        signal.pthread_kill(self._target, _SIGNAL)
                return

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._armed and self.stalled and self.firing is not None:
            raise Stalled(self.firing)
        if callable(self._previous):  # someone else's signal: pass it on
            self._previous(signum, frame)

    def _beat(self, state: TrainerState, control: TrainerControl) -> None:
        self._halt(control)
        if not self.stalled:
            self._last_beat = time.monotonic()
            self._last_step = state.global_step

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        super().on_train_begin(args, state, control, **kwargs)
        self.stop()  # a Trainer reused for a second train() call
        self.stalled = False
        self._last_beat, self._last_step = time.monotonic(), state.global_step
        main = threading.current_thread() is threading.main_thread()
        if self.interrupt and main and _SIGNAL is not None and hasattr(signal, "pthread_kill"):
            self._previous = signal.signal(_SIGNAL, self._on_signal)
            self._target, self._armed = threading.get_ident(), True
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="greenladder-stall-watchdog", daemon=True)
        self._thread.start()

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self.stop()

    def stop(self) -> None:
        """End the watchdog and restore the signal handler.

        The Trainer's ``on_train_end`` does it; call it yourself when ``train()`` raised (it is
        idempotent). Once it returns no :class:`Stalled` can be raised any more.
        """
        with self._lock:
            self._armed = False
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._target is not None and _SIGNAL is not None:
            with contextlib.suppress(ValueError):  # only the main thread may set handlers
                signal.signal(_SIGNAL, self._previous if self._previous is not None else signal.SIG_DFL)
            self._target = self._previous = None

    def _check(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._halt(control)

    def _progress(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._beat(state, control)

    # Events that only check for a stall (nothing has completed yet) ...
    on_step_begin = on_pre_optimizer_step = _check
    # ... and events that are progress.
    on_step_end = on_substep_end = on_epoch_end = on_log = _progress
    on_prediction_step = on_evaluate = on_save = _progress


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
