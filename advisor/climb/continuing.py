"""``advise --from``'s decisions, as pure functions of their evidence: continuing, then resuming the climb.

Continuing an earlier model on expanded data (:mod:`advisor.incremental.executor`) judges the earlier model
as it stands, then trains continuation trials until one passes, the budget refuses the next, or
``tuning.trials_per_rung`` are done; then it falls back on the from-scratch comparison or the
baseline. When no continuation passes within the budget, the climb resumes on the rungs above the
earlier recommendation (:mod:`advisor.incremental.resumption` carries it out). What to do next, what
to recommend and whether to resume are decided here, from the records alone, so they are tested
without training (tests/test_policy.py); :func:`advisor.climb.policy.decide` hands the evidence here,
and the executors only carry the actions out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from advisor.climb.evidence import Recorded, Stop
from advisor.climb.spending import budget_refuses
from advisor.config.settings import Config
from advisor.outcome import Verdict
from advisor.runkey import RunKey
from advisor.types import Cost, RunResult


@dataclass(frozen=True)
class Continue(Recorded):
    """Continue the earlier model once more: trial ``key`` (read back when ``key`` is recorded)."""

    key: RunKey


@dataclass(frozen=True)
class ContinuationEvidence:
    """What the next continuation decision reads.

    Attributes:
        rung: the earlier model's rung (the continuation trials' step).
        origin: where the earlier model comes from (its run directory), for the reasons given.
        trials: the continuation trials so far, in order.
        verdicts: every judged run's verdict (trials included).
        recorded: run ids the ledger already holds finished (read back, not paid for again).
        spent: what the search has spent so far (the baseline, the earlier model, the trials).
        first_forecast: the first trial's forecast cost (later ones: the previous trial's cost).
    """

    rung: str
    origin: str
    trials: tuple[RunResult, ...]
    verdicts: Mapping[str, Verdict]
    recorded: frozenset[str]
    spent: Cost
    first_forecast: Cost


def next_continuation(evidence: ContinuationEvidence, config: Config) -> Continue | Stop:
    """The next continuation trial, or the stop of the trial loop: a trial passed (``met``), the
    budget cannot fit the next (``budget``), or every trial was used (``not_met``, or ``budget`` when
    the budget stopped one inside). A trial the ledger holds is read back whatever the budget says."""
    e = evidence
    passed = next((r for r in e.trials if e.verdicts[r.run_id].passed), None)
    if passed is not None:
        return Stop(f"{e.rung} continued from {e.origin} meets every criterion", passed.run_id, "met")
    outcome = "budget" if any(r.status == "budget" for r in e.trials) else "not_met"
    if len(e.trials) >= config.tuning.trials_per_rung:
        return Stop("", None, outcome)
    key = RunKey("continuation", e.rung, len(e.trials) + 1)
    if key.run_id in e.recorded:
        return Continue(key)
    forecast = e.trials[-1].cost if e.trials else e.first_forecast
    over = budget_refuses(config, e.spent, forecast)
    if over is not None:
        return Stop(f"stopped before {key.run_id}: {over}", None, "budget")
    return Continue(key)


def continuation_recommendation(
    rung: str,
    origin: str,
    ended: Stop,
    best: RunResult | None,
    scratch: RunResult | None,
    verdicts: Mapping[str, Verdict],
) -> tuple[str | None, str]:
    """What the continuation recommends, and why: a passing trial; else the from-scratch run or the
    baseline if either passes, with the reason the continuation fell short (``best``: the trial
    that finished highest, whose failed criteria are named)."""
    if ended.recommendation is not None:
        return ended.recommendation, ended.reason
    recommendation = None
    if scratch is not None and verdicts[scratch.run_id].passed:
        recommendation = scratch.run_id
    elif verdicts["baseline"].passed:
        recommendation = "baseline"
    prefix = ended.reason + "; " if ended.reason else ""
    if best is not None and not verdicts[best.run_id].failed:  # its interval straddles the floor
        return recommendation, prefix + f"{rung} continued from {origin} is undecided ({best.run_id})"
    failed = "; ".join(verdicts[best.run_id].failed) if best is not None else "no continuation finished"
    return recommendation, prefix + f"{rung} continued from {origin} fails ({failed})"


def best_trial(trials: Sequence[RunResult], metric: str) -> RunResult | None:
    """The continuation trial that finished with the highest metric, if any finished."""
    return max((r for r in trials if r.status == "ok"), key=lambda r: r.metrics.get(metric, 0.0), default=None)


# ----------------------------------------------------------------------------- resuming the climb


@dataclass(frozen=True)
class ResumptionEvidence:
    """What the decision to resume the climb after a continuation reads.

    Attributes:
        earlier: the earlier recommendation's name (a rung, or the baseline's name).
        from_baseline: the earlier recommendation was the TF-IDF baseline.
        ladder: the ladder the earlier run climbed.
        climbable: that ladder's rungs the earlier run could climb, smallest first; None when the
            ladder could not be read (``unreadable`` says why).
        resume: whether resuming is on (``incremental.resume_climb``).
        ended: how the continuation ended; None while it has not run (the plan made before it, so
            that the rungs above are counted in the Bonferroni family of every verdict).
        unreadable: why the ladder could not be read.
    """

    earlier: str
    from_baseline: bool
    ladder: str
    climbable: tuple[str, ...] | None
    resume: bool = True
    ended: Stop | None = None
    unreadable: str = ""


@dataclass(frozen=True)
class ResumeClimb:
    """Climb ``rungs`` (smallest first) in the same run directory, on the expanded data."""

    rungs: tuple[str, ...]


def resume_after(evidence: ResumptionEvidence) -> ResumeClimb | Stop:
    """The rungs above the earlier recommendation, or why the climb does not resume.

    The climb resumes *above* the earlier rung (that rung has just had its turn on this data, with
    a better start than its checkpoint), at the ladder's first rung after a baseline. It does not
    resume once the continuation passed (``met``), when the budget ended it (``budget``), when
    resuming is off, when the ladder cannot be read, or above the top rung.
    """
    e = evidence
    if e.ended is not None and e.ended.recommendation is not None:
        return e.ended
    outcome = e.ended.outcome if e.ended is not None else "not_met"
    if outcome == "budget":
        return Stop("the climb was not resumed: the budget does not allow the next step", None, "budget")
    if not e.resume:
        why = f"the climb was not resumed (--no-resume-climb); rerun without it to climb above {e.earlier}"
        return Stop(why, None, outcome)
    if e.climbable is None:
        return Stop(
            f"the climb was not resumed: the earlier run's ladder cannot be read ({e.unreadable})", None, outcome
        )
    if e.from_baseline:
        above = e.climbable
    elif e.earlier in e.climbable:
        above = e.climbable[e.climbable.index(e.earlier) + 1 :]
    else:
        why = f"the climb was not resumed: {e.earlier} is not a rung of the ladder {e.ladder} the earlier run climbed"
        return Stop(why, None, outcome)
    if not above:
        return Stop(
            f"{e.earlier} is the top rung of the ladder {e.ladder}: there is no larger rung to climb", None, outcome
        )
    return ResumeClimb(tuple(above))
