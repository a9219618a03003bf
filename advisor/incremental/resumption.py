"""When a continued model fails the criteria on the expanded data, the climb resumes above its rung.

``advise --from`` first continues the earlier recommendation (:mod:`advisor.incremental.executor`). If no
continuation trial meets the criteria, the ordinary climb (:class:`advisor.climb.executor.Climb` asking
:func:`advisor.climb.policy.decide`) goes on in the same run directory and ledger, on the expanded data,
starting at the rung *above* the earlier recommendation of the ladder the earlier run climbed.

Why above and not the same rung again: that rung has just had its turn on this data, with a
better start than its pre-trained checkpoint (a model already fitted to the task) and up to
``tuning.trials_per_rung`` tuned trials, as many as the climb gives any rung. Training it once more
from its checkpoint is the ``--compare-scratch`` arm, which is judged too and recommended when it
passes. The rungs below were passed over on the earlier data because they failed, and the climb
never goes down. A TF-IDF recommendation that fails when refitted resumes at the ladder's first
rung.

The climb counts the continuation's cost against the budgets, and the continuation's candidates in
the Bonferroni family of every verdict (decided before anything is trained), so the verdicts of
both parts are made at one level. A rerun after a kill reads the continuation back from the ledger,
fails it again without training, and the climb replays its own records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

from advisor.climb.choices import WARM_KEYS
from advisor.climb.executor import Climb
from advisor.climb.policy import ResumeClimb, ResumptionEvidence, RungInfo, Stop, decide, rung_candidates
from advisor.config.settings import Config
from advisor.errors import GreenladderError
from advisor.incremental.executor import Continued, candidates_judged
from advisor.models.ladder import load_ladder
from advisor.outcome import Report

Progress = Callable[[str], None]
#: a climb in the run directory being resumed, for a config (``Climb`` with the data, run
#: directory, ledger, fingerprint, progress and distiller already given)
StartClimb = Callable[..., Climb]


class Plan(NamedTuple):
    """The climb that follows a failed continuation, planned before anything is trained."""

    #: the climb's config (the earlier run's ladder, restricted to the rungs above), or None
    config: Config | None
    #: the rungs it may climb, smallest first
    rungs: tuple[str, ...]
    #: candidates those rungs may judge on the validation rows (for the Bonferroni family)
    candidates: int
    #: why no climb would follow (opted out, top rung, ladder unreadable); "" when one would
    why_not: str
    #: what the policy decided the plan from; decided again once the continuation has ended
    evidence: ResumptionEvidence | None = None


def plan(config: Config, prev: Report) -> Plan:
    """The rungs above the earlier recommendation, on the ladder the earlier run climbed, as the
    policy decides them (:func:`advisor.climb.policy.decide` on a :class:`ResumptionEvidence`).

    Args:
        prev: the earlier run's report.json (see :func:`advisor.incremental.inputs.previous_recommendation`).
    """
    if prev.recommended is None:
        raise ValueError("plan: the earlier report recommends nothing to continue from")
    rec = prev.recommended.candidate
    earlier = prev.config.get("ladder", {})
    ladder_name = str(earlier.get("name") or config.ladder.name)
    chosen = [str(r) for r in earlier.get("rungs") or []]
    evidence = ResumptionEvidence(rec.name, rec.kind == "baseline", ladder_name, None, config.incremental.resume_climb)
    try:
        rungs = {r.name: r for r in load_ladder(ladder_name)}
    except GreenladderError as exc:
        rungs, evidence = {}, dataclasses.replace(evidence, unreadable=str(exc))
    else:
        climbable = tuple(name for name, r in rungs.items() if (name in chosen if chosen else not r.optional))
        evidence = dataclasses.replace(evidence, climbable=climbable)
    action = decide(evidence)
    if isinstance(action, Stop):
        return Plan(None, (), 0, action.reason, evidence)
    ladder = dataclasses.replace(config.ladder, name=ladder_name, rungs=list(action.rungs))
    climb_config = dataclasses.replace(config, ladder=ladder)
    infos = [RungInfo(n, rungs[n].params_non_embedding, rungs[n].optional) for n in action.rungs]
    return Plan(climb_config, action.rungs, rung_candidates(infos, climb_config), "", evidence)


def after_continuation(plan: Plan, c: Continued, prev: Report, start: StartClimb, say: Progress) -> Continued:
    """What follows the continuation, as the policy decides it from how the continuation ended: the
    planned climb (:func:`resume_climb`), or the continuation as the run's outcome, its stop reason
    saying why no climb followed. A continuation that passed is returned as it is."""
    if c.recommendation is not None:
        return c
    ended = Stop(c.stop_reason, c.recommendation, c.outcome)
    action = decide(dataclasses.replace(plan.evidence, ended=ended)) if plan.evidence is not None else None
    if isinstance(action, ResumeClimb) and plan.config is not None:
        return resume_climb(plan, c, prev, start, say)
    why = action.reason if isinstance(action, Stop) else plan.why_not
    return c._replace(stop_reason=f"{c.stop_reason}; {why}")


def resume_climb(
    plan: Plan,
    c: Continued,
    prev: Report,
    start: StartClimb,
    say: Progress,
) -> Continued:
    """Climb the planned rungs after a failed continuation; the result holds both parts."""
    if plan.config is None:
        raise ValueError("resume_climb needs a plan with rungs to climb")
    earlier = prev.recommended
    if earlier is None:
        raise ValueError("resume_climb: the earlier report recommends nothing")
    name, from_baseline = earlier.candidate.name, earlier.candidate.kind == "baseline"
    hp = earlier.hyperparameters
    warm = {k: hp[k] for k in WARM_KEYS if k in hp} or None
    say(f"{name} does not meet the criteria on the expanded data: the climb resumes at {plan.rungs[0]}")
    climb = start(
        plan.config,
        before=c.runs,
        prior_candidates=0 if from_baseline else candidates_judged(plan.config),
        warm_start=warm,
    )
    stop = climb.run()
    climbed = [r for r in climb.runs if r.run_id != "baseline"]
    baseline = next((r for r in climb.runs if r.run_id == "baseline"), c.baseline)
    verdicts = {**c.verdicts, **climb.verdicts()}
    where = "at the ladder's first rung" if from_baseline else f"above {name}"
    reason = f"{c.stop_reason}; the climb resumed {where} ({', '.join(plan.rungs)}): {stop.reason}"
    incremental = {
        **c.details.get("incremental", {}),
        "resumed_climb": {
            "after": name,
            "rungs": list(plan.rungs),
            "runs": [r.run_id for r in climbed],
            "recommendation": stop.recommendation,
            "outcome": stop.outcome,
        },
    }
    details = {**c.details, "incremental": incremental, **climb.ending(stop)}
    return Continued(baseline, [*c.runs, *climbed], verdicts, stop.recommendation, reason, details, stop.outcome)
