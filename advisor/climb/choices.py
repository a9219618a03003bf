"""The choices around each step of the climb, as pure functions of the evidence: when to order the
steps, which step's cost to forecast next, which run's settings start a rung's tuning, when to read
and when to wait for what other workers did on a shared study, whether to read a step's result
back or to do it again. :func:`advisor.climb.policy.decide` asks for them as actions (the chores of
:mod:`advisor.climb.evidence`) and :mod:`advisor.climb.executor` carries them out: the executor
decides nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from advisor import runkey
from advisor.climb.evidence import (
    Action,
    Evidence,
    FitBaseline,
    Forecast,
    OrderSteps,
    ReadBack,
    ReadShared,
    Redo,
    RungInfo,
    Skip,
    Step,
    Stop,
    Train,
    WaitForShared,
)
from advisor.climb.spending import any_budget
from advisor.config.settings import Config
from advisor.types import Cost, RunResult

#: the settings a rung's tuning starts from when a rung below finished a trial
WARM_KEYS = ("learning_rate", "epochs", "warmup_ratio")


def before_acting(action: Step | Stop, evidence: Evidence, config: Config) -> Action:
    """What to do before, or instead of, the climb's ``action``: wait for the trials other workers
    still run on a rung just read as used up (even before a stop: one of them may pass the rung);
    then, unless the climb stops, order the steps before the first step past the baseline; forecast
    the next step when a budget will be checked against it (the climb is then decided again: the
    forecast may refuse the step); give a trial its warm start, and read what the other workers of
    a shared study did before training it; read a recorded result back, or redo a failed one."""
    wait = wait_needed(evidence, config)
    if wait is not None:
        return wait
    if isinstance(action, Stop):
        return action
    if not evidence.ordered and not isinstance(action, FitBaseline):
        return OrderSteps()
    forecast = forecast_needed(evidence, config)
    if forecast is not None:
        return forecast
    if isinstance(action, Train) and is_trial(action):
        action = dataclasses.replace(action, warm_start=warm_settings(evidence, action.rung, config.criteria.metric))
        if config.tuning.storage and action.run_id not in evidence.recorded:
            mine = evidence.shared.get(action.rung)
            if mine is None or mine.as_of != len(evidence.runs):
                return ReadShared(action)  # this worker's reading is older than its last run
    return with_record(action, evidence)


def forecast_needed(evidence: Evidence, config: Config) -> Forecast | None:
    """The forecast a budget check needs: a budget is set, the steps are ordered, a transformer's
    speed is known and the first step not yet taken has none; None when nothing is missing."""
    if not evidence.ordered or not any_budget(config.criteria):
        return None
    step = step_to_forecast(evidence.rungs, evidence.runs, evidence.forecasts, evidence.speed_known)
    return Forecast(step) if step is not None else None


def warm_settings(evidence: Evidence, rung: str, metric: str) -> Mapping[str, Any] | None:
    """The settings that start ``rung``'s tuning: the best trial of the last rung climbed below it
    (:func:`warm_start`), else the ``--from`` run's (``evidence.warm_start``), else None."""
    best = warm_start(evidence.runs, rung, metric)
    if best is None:
        return evidence.warm_start
    return {k: best.hyperparameters[k] for k in WARM_KEYS}


def wait_needed(evidence: Evidence, config: Config) -> WaitForShared | None:
    """Wait, once, on a rung whose fresh reading of its shared study (made since this worker's last
    run) shows every trial started and none finished at the floor (:func:`wait_for_shared`): a trial
    still running elsewhere may yet pass it, and the climb, which reads the rung's trials as used
    up, would otherwise move past it or stop."""
    if not config.tuning.storage:
        return None
    trials, floor = config.tuning.trials_per_rung, config.criteria.floor
    for rung, reading in evidence.shared.items():
        fresh = reading.as_of == len(evidence.runs)
        if fresh and not reading.waited and wait_for_shared(reading.started, reading.best, trials, floor):
            return WaitForShared(rung)
    return None


def with_record(action: Step, evidence: Evidence) -> Step | ReadBack | Redo:
    """``action`` itself, or its recorded result read back, or a redo of its failed record."""
    recorded = evidence.recorded.get(action.run_id)
    known = read_back(recorded, action)
    if known is not None:
        return ReadBack(action, known)
    if recorded is not None:
        return Redo(action, recorded)
    return action


def is_trial(run: RunResult | Train) -> bool:
    """Whether ``run`` (a record, or the action that makes one) is one of its rung's tuning trials:
    not a small experiment, a skip, a probe, a student or a continuation."""
    return run.key.role == "trial"


def read_back(known: RunResult | None, action: Action) -> RunResult | None:
    """The recorded result to use instead of carrying ``action`` out: its finished record. A failed
    run is done again (an out-of-memory or a crash may not recur); a skip is never redone, since
    its record is the decision itself."""
    if known is None or (known.status == "failed" and not isinstance(action, Skip)):
        return None
    return known


def warm_start(runs: Sequence[RunResult], rung: str, metric: str) -> RunResult | None:
    """The run whose settings start ``rung``'s tuning: the best finished trial of the last rung
    climbed below it (probes, small experiments, students and continuations are not trials); None
    when no rung below finished a trial, and the tuner's own default starts."""
    below = [r for r in runs if is_trial(r) and r.status == "ok" and metric in r.metrics and r.key.step != rung]
    if not below:
        return None
    last = below[-1].key.step
    return max((r for r in below if r.key.step == last), key=lambda r: r.metrics[metric])


def step_to_forecast(
    steps: Sequence[RungInfo], runs: Sequence[RunResult], forecasts: Mapping[str, Cost], speed_known: bool
) -> RungInfo | None:
    """The step whose cost to forecast next (a budget is checked against it before it starts): the
    first step not yet taken, once a transformer's speed has been measured (``speed_known``: a
    transformer ran here or before the climb); None when there is nothing new to forecast."""
    tried = {r.candidate.name for r in runs if r.candidate.kind in ("finetune", "probe")}
    if not tried and not speed_known:
        return None
    step = next((s for s in steps if s.name not in tried), None)
    return None if step is None or step.name in forecasts else step


def small_curves(runs: Sequence[RunResult], rungs: Iterable[str], metric: str) -> list[tuple[float, float]]:
    """(small-experiment score, best full trial's score) of every rung in ``rungs`` that has both: the
    learning curves the next small experiment's forecast transfers."""
    out = []
    for name in rungs:
        small = next((r for r in runs if r.key == runkey.small(name) and r.status == "ok"), None)
        full = [
            r.metrics[metric]
            for r in runs
            if r.candidate.name == name and is_trial(r) and r.status == "ok" and metric in r.metrics
        ]
        if small is not None and full and metric in small.metrics:
            out.append((small.metrics[metric], max(full)))
    return out


def wait_for_shared(started: int, best: float | None, trials_per_rung: int, floor: float) -> bool:
    """Whether to wait for trials other workers still run on a rung's shared study before deciding
    on it: every trial of the rung has started (``started``) and none finished at the floor yet
    (``best``: the study's best value, None when none finished), so one still running may pass."""
    return started >= trials_per_rung and (best is None or best < floor)
