"""How a training run ended, read from typed callbacks rather than probed for attributes.

Three kinds of callback end a run before its last step, each with its own record:

- a health rule (:class:`advisor.health.rules.HealthRule`) fires: the run is ``stopped``, with the rule's
  :class:`~advisor.health.rules.RuleFiring`;
- a callback the caller adds stops it for a reason of its own (:class:`StopsRun`: the pruner,
  ``stopped``; the budget watch, ``budget``), with its ``stop_message``;
- early stopping (:class:`advisor.training.best.EarlyStopping`) ends a plateau: the run stays ``ok``.

:func:`run_stop` reads them in that order. Callbacks that need the run's meter or its evaluations
(the budget watch, the pruner, the cost checkpoints) subclass :class:`RunWatcher`, and the trainer
hands them over with :func:`bind_meter` and :func:`watch_evaluations`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from transformers import TrainerCallback

from advisor.health.rules import first_firing, steps_saved
from advisor.health.watchdog import StallRule
from advisor.training.best import BestWeights, EarlyStopping


class RunWatcher(TrainerCallback):
    """A Trainer callback that reads the run it watches: its meter and its evaluations.

    The trainer calls :meth:`bind` before training starts (each attempt's meter and token counter)
    and :meth:`watch` with each attempt's best-weight keeper; both do nothing unless overridden.
    """

    def bind(self, meter: Any, counter: Any) -> None:
        """Watch a run metered by ``meter`` (an open :class:`advisor.metering.cost.Meter`) and ``counter``
        (its :class:`advisor.training.counting.MeteringCallback`, whose pending tallies the meter lacks)."""

    def watch(self, best: BestWeights, num_labels: int) -> None:
        """Read the evaluations of ``best`` on a ``num_labels``-class task."""


class StopsRun(RunWatcher):
    """A callback that may stop a run for a reason the run is recorded with.

    Attributes:
        stop_status: the run's status once this callback stopped it.
        stop_message: why it stopped the run (one line), or None while it has not.
    """

    stop_status: ClassVar[Literal["stopped", "budget"]] = "stopped"

    def __init__(self) -> None:
        self.stop_message: str | None = None


class FitGate(Protocol):
    """What a phase of plain fits (the baseline's C values and folds) asks between its fits.

    The climb's budget watch (:class:`advisor.climb.budget.FitBudget`) is one; training only needs
    the shape, so it does not import the climb.
    """

    stop_message: str | None

    def bind(self, meter: Any) -> None:
        """Watch a new phase metered by ``meter``."""

    def next_fit(self, what: str) -> bool:
        """True when the next fit (``what``, for the message) may start."""


def bind_meter(callbacks: Iterable[TrainerCallback], meter: Any, counter: Any) -> None:
    """Hand the run's open meter and its counter to every :class:`RunWatcher` in ``callbacks``."""
    for cb in callbacks:
        if isinstance(cb, RunWatcher):
            cb.bind(meter, counter)


def watch_evaluations(callbacks: Iterable[TrainerCallback], best: BestWeights, num_labels: int) -> None:
    """Hand an attempt's best-weight keeper to every :class:`RunWatcher` in ``callbacks``."""
    for cb in callbacks:
        if isinstance(cb, RunWatcher):
            cb.watch(best, num_labels)


def stopped_by(callbacks: Iterable[TrainerCallback]) -> StopsRun | None:
    """The first :class:`StopsRun` in ``callbacks`` that stopped the run, or None."""
    return next((cb for cb in callbacks if isinstance(cb, StopsRun) and cb.stop_message is not None), None)


@dataclass(frozen=True)
class RunStop:
    """How a training attempt that raised nothing ended.

    Attributes:
        status: ``ok`` (ran its course or was early-stopped), ``stopped`` (a health rule or the
            pruner) or ``budget`` (the budget watch).
        message: why it was stopped, or None for ``ok``.
        details: facts for the run's record (``rule``, ``early_stop``, ``steps_saved``).
    """

    status: Literal["ok", "stopped", "budget"] = "ok"
    message: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def run_stop(callbacks: Iterable[TrainerCallback], total_steps: int, steps_done: int, metric: str) -> RunStop:
    """Why an attempt of ``total_steps`` planned steps ended after ``steps_done``: the earliest health
    rule that fired, else the first callback that stopped it for its own reason, else early stopping."""
    callbacks = list(callbacks)
    firing = first_firing(callbacks)
    if firing is not None:
        return RunStop(
            "stopped",
            f"stopped by rule {firing.rule} at step {firing.step}: {firing.message}",
            {
                "rule": {"rule": firing.rule, "step": firing.step, "numbers": dict(firing.numbers)},
                "steps_saved": steps_saved(firing, total_steps),
            },
        )
    saved = max(0, total_steps - steps_done)
    stopper = stopped_by(callbacks)
    if stopper is not None:  # the pruner's "stopped", or the budget's "budget" (its partial model is judged)
        return RunStop(stopper.stop_status, stopper.stop_message, {"steps_saved": saved})
    early = next((cb for cb in callbacks if isinstance(cb, EarlyStopping) and cb.stopped_step is not None), None)
    if early is not None:
        return RunStop("ok", None, {"early_stop": early.describe(metric), "steps_saved": saved})
    return RunStop()


def end_watchdogs(callbacks: Iterable[TrainerCallback]) -> None:
    """End the watchdog threads of the stall rules in ``callbacks`` (when a run ends, also when it raised)."""
    for cb in callbacks:
        if isinstance(cb, StallRule):
            cb.stop()
