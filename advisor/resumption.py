"""When a continued model fails the criteria on the expanded data, the climb resumes above its rung.

``advise --from`` first continues the earlier recommendation (:mod:`advisor.incremental`). If no
continuation trial meets the criteria, the ordinary climb (:class:`advisor.climb.Climb` asking
:func:`advisor.policy.decide`) goes on in the same run directory and ledger, on the expanded data,
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
from typing import Any, NamedTuple

from advisor.climb import Climb
from advisor.config import Config
from advisor.errors import GreenladderError
from advisor.incremental import Continued, candidates_judged
from advisor.models import load_ladder
from advisor.policy import RungInfo, rung_candidates

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


def plan(config: Config, prev: dict[str, Any]) -> Plan:
    """The rungs above the earlier recommendation, on the ladder the earlier run climbed.

    Args:
        prev: the earlier run's report.json (see :func:`advisor.continuation.previous_recommendation`).
    """
    rec = prev["recommendation"]["candidate"]
    name = str(rec["name"])
    if not config.incremental.resume_climb:
        return Plan(
            None, (), 0, f"the climb was not resumed (--no-resume-climb); rerun without it to climb above {name}"
        )
    earlier = prev.get("config", {}).get("ladder", {})
    ladder_name = str(earlier.get("name") or config.ladder.name)
    chosen = [str(r) for r in earlier.get("rungs") or []]
    try:
        rungs = load_ladder(ladder_name)
    except GreenladderError as exc:
        return Plan(None, (), 0, f"the climb was not resumed: the earlier run's ladder cannot be read ({exc})")
    climbable = [r for r in rungs if (r.name in chosen if chosen else not r.optional)]
    names = [r.name for r in climbable]
    if rec["kind"] == "baseline":
        above = climbable
    elif name in names:
        above = climbable[names.index(name) + 1 :]
    else:
        return Plan(
            None,
            (),
            0,
            f"the climb was not resumed: {name} is not a rung of the ladder {ladder_name} the earlier run climbed",
        )
    if not above:
        return Plan(
            None, (), 0, f"{name} is the top rung of the ladder {ladder_name}: there is no larger rung to climb"
        )
    ladder = dataclasses.replace(config.ladder, name=ladder_name, rungs=[r.name for r in above])
    climb_config = dataclasses.replace(config, ladder=ladder)
    infos = [RungInfo(r.name, r.params_non_embedding, r.optional) for r in above]
    return Plan(climb_config, tuple(r.name for r in above), rung_candidates(infos, climb_config), "")


def not_resumed(plan: Plan, c: Continued) -> Continued:
    """The failed continuation as the run's outcome, its stop reason saying why no climb followed."""
    why = (
        "the climb was not resumed: the budget does not allow the next step" if c.outcome == "budget" else plan.why_not
    )
    return c._replace(stop_reason=f"{c.stop_reason}; {why}")


def resume_climb(
    plan: Plan,
    c: Continued,
    prev: dict[str, Any],
    start: StartClimb,
    say: Progress,
) -> Continued:
    """Climb the planned rungs after a failed continuation; the result holds both parts."""
    if plan.config is None:
        raise ValueError("resume_climb needs a plan with rungs to climb")
    rec = prev["recommendation"]
    name, from_baseline = str(rec["candidate"]["name"]), rec["candidate"]["kind"] == "baseline"
    earlier: dict[str, Any] = next((r for r in prev.get("runs", []) if r.get("run_id") == rec.get("run_id")), {})
    hp = earlier.get("hyperparameters") or {}
    warm = {k: hp[k] for k in ("learning_rate", "epochs", "warmup_ratio") if k in hp} or None
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
