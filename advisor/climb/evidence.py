"""What a decision of the climb reads and what it returns.

:class:`Evidence` is everything :func:`advisor.climb.policy.decide` may look at (the steps, the recorded
runs, the validation labels, forecasts, what other workers did, what was spent); the actions are
what it can ask the executor (:mod:`advisor.climb.executor`) to do. Each action that is recorded as a run
carries that run's :class:`~advisor.runkey.RunKey`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from advisor import runkey
from advisor.runkey import RunKey
from advisor.types import Cost, RunResult


@dataclass(frozen=True)
class RungInfo:
    """What the policy knows of a step of the climb before taking it.

    A step is one way of using one encoder of the ladder: its fine-tune (``method`` "finetune",
    named after the rung, trained as trials) or its frozen-encoder probe ("probe", named after the
    probe's run id, one run). :mod:`advisor.climb.steps` lists them cheapest first.
    """

    name: str
    params_non_embedding: int | None = None
    optional: bool = False
    method: str = "finetune"
    #: the ladder rung whose encoder the step uses (the step's own name when empty)
    encoder: str = ""
    #: forecast training FLOPs of the step (a probe's pass over the training rows, a fine-tune's
    #: first trial), the order of the climb; None when not forecast
    forecast_flops: float | None = None
    #: a data-size rung: the training rows it uses (a stratified prefix); None: all of them
    rows: int | None = None
    #: a data-size rung's full-size step (the step it grows into); empty for a full-size step
    grows: str = ""

    @property
    def rung(self) -> str:
        return self.encoder or self.name

    @property
    def family(self) -> str:
        """The full-size step this step is, or grows into: its data-size rungs share its fate."""
        return self.grows or self.name


@dataclass(frozen=True)
class SharedStudy:
    """What other workers sharing a rung's study have done (read from the study storage)."""

    started: int = 0
    best: float | None = None
    #: which trial holds ``best``, its settings and the worker (run directory) that ran it
    where: str = ""
    #: how many runs this worker had recorded when the study was read (a reading is fresh for the
    #: decision it was made for, until the next run is recorded); None: not read by the executor
    as_of: int | None = None
    #: whether this reading came after waiting for the trials other workers were still running
    waited: bool = False


@dataclass(frozen=True)
class Evidence:
    """Everything a decision may depend on.

    Attributes:
        rungs: the ladder, smallest first, as configured.
        runs: every recorded run, in the order it was made (the baseline first).
        val_labels: the validation split's labels (the rows every verdict is decided on).
        num_labels: number of classes.
        forecasts: forecast cost of each rung's next full trial (analytic FLOPs, measured speed).
        shared: per rung, what other workers sharing the study did (empty without a shared study).
        spent: what the search has spent so far, all phases (budgets are checked against it).
        train_rows: rows of the training split (data-size rungs forecast their curve to it).
        prior_candidates: runs judged on the same validation rows before this climb began, other
            than the baseline (a ``--from`` continuation's: the earlier model, its trials, the
            from-scratch run); they widen the Bonferroni family, and a climb that follows them
            holds its first rung to its budget forecast like any later rung.
        recorded: the run directory's ledger, by run id: what an action's result already is (a
            resumed climb reads it back; a failed record is done again).
        warm_start: settings for the first fine-tune's first trial when no rung below finished a
            trial here (a ``--from`` run's winning settings); None: the tuner's own default.
        ordered: whether the steps are in order of forecast compute on this data (the executor
            orders them before the first step past the baseline, when the policy asks).
        speed_known: whether a transformer's speed was measured before this climb (a ``--from``
            continuation ran): a forecast can then be made before the first step.
    """

    rungs: tuple[RungInfo, ...]
    runs: tuple[RunResult, ...]
    val_labels: tuple[int, ...]
    num_labels: int
    forecasts: Mapping[str, Cost] = field(default_factory=dict)
    shared: Mapping[str, SharedStudy] = field(default_factory=dict)
    spent: Cost = field(default_factory=Cost)
    prior_candidates: int = 0
    #: rows of the training split (what a data-size rung's learning curve is forecast to)
    train_rows: int = 0
    recorded: Mapping[str, RunResult] = field(default_factory=dict)
    warm_start: Mapping[str, Any] | None = None
    ordered: bool = True
    speed_known: bool = False

    def run(self, run_id: str) -> RunResult | None:
        return next((r for r in self.runs if r.run_id == run_id), None)


# ----------------------------------------------------------------------------- actions


class Recorded:
    """An action whose result is recorded as one run, identified by ``key``."""

    key: RunKey

    @property
    def run_id(self) -> str:
        return self.key.run_id


@dataclass(frozen=True)
class FitBaseline(Recorded):
    key: RunKey = runkey.BASELINE


@dataclass(frozen=True)
class Train(Recorded):
    """Train ``rung``: a trial (``key`` of role "trial"), its small experiment (role "small"), or a
    data-size rung (role "sized") on the first ``rows`` training rows of a stratified order."""

    rung: str
    key: RunKey
    rows: int | None = None
    #: a trial's: the settings that start its rung's tuning (the best trial of the last rung climbed
    #: below, else the ``--from`` run's), None for the tuner's default; not part of the action's identity
    warm_start: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def small(self) -> bool:
        return self.key.role == "small"


@dataclass(frozen=True)
class Probe(Recorded):
    """Embed the texts with ``rung``'s frozen encoder and fit a linear head, recorded as ``key``: on
    every training row, or (a data-size rung) on the first ``rows`` of a stratified order."""

    rung: str
    key: RunKey
    rows: int | None = None


@dataclass(frozen=True)
class Skip(Recorded):
    """Record that a step of ``rung`` is skipped (its forecast misses the floor), without training it.
    ``key.step`` names the step: the rung's fine-tune, or (``method`` "probe") its probe."""

    rung: str
    key: RunKey
    message: str
    #: the forecast behind the skip (``Forecast.to_dict()``)
    forecast: Mapping[str, Any] = field(default_factory=dict)
    method: Literal["finetune", "probe"] = "finetune"


@dataclass(frozen=True)
class Distil(Recorded):
    """Distil ``parent`` (a run id: good enough, too big or slow) into a student recorded as ``key``."""

    parent: str
    key: RunKey


@dataclass(frozen=True)
class Stop:
    """End the climb. ``outcome``: ``met`` (a recommendation), ``not_met`` or ``budget``."""

    reason: str
    recommendation: str | None
    outcome: str
    #: what the next rung would have cost (budget stops), for the message
    next_cost: Cost | None = None


#: an action whose result is one recorded run
Step = FitBaseline | Probe | Train | Skip | Distil


# ----------------------------------------------------------------------------- the executor's chores
# Choices the executor used to make on its own, now asked for by the policy: none is recorded as a
# run; each changes what the next decision sees.


@dataclass(frozen=True)
class OrderSteps:
    """Put the steps in order of forecast training compute on this data and show the order: asked
    for once, before the first step past the baseline."""


@dataclass(frozen=True)
class Forecast:
    """Forecast ``step``'s cost from its encoder's shape, the data's tokens and the speed measured so
    far (a budget is checked against it before the step starts)."""

    step: RungInfo


@dataclass(frozen=True)
class ReadShared:
    """Read what the other workers sharing ``trial``'s study did on its rung, before training it."""

    trial: Train


@dataclass(frozen=True)
class WaitForShared:
    """Wait for the trials other workers still run on ``rung`` (its study, just read, shows every
    trial started and none finished at the floor: one still running may pass the rung), then read
    the study again."""

    rung: str


@dataclass(frozen=True)
class ReadBack:
    """``action``'s result is already recorded (a resumed climb): use ``run`` instead of doing it."""

    action: Step
    run: RunResult


@dataclass(frozen=True)
class Redo:
    """``action`` failed last time (``failed``, its record): do it again (an out-of-memory error or
    a crash may not recur)."""

    action: Step
    failed: RunResult


Chore = OrderSteps | Forecast | ReadShared | WaitForShared | ReadBack | Redo
Action = FitBaseline | Probe | Train | Skip | Distil | Stop | Chore
