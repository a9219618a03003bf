"""The executor's own choices, as pure functions of the records: read a run back or redo it, which
run's settings start a rung's tuning, which step's cost to forecast next, whether to wait for the
trials other workers are still running on a shared study. :mod:`advisor.climb.executor`
carries them out; :mod:`advisor.climb.policy` re-exports them with the climb's decisions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from advisor import runkey
from advisor.climb.evidence import Action, RungInfo, Skip
from advisor.types import Cost, RunResult


def is_trial(run: RunResult) -> bool:
    """Whether ``run`` is one of its rung's tuning trials: not a small experiment, a skip, a probe, a
    student or a continuation."""
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
