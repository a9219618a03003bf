"""The one decision-maker: a pure function from the evidence so far to the next action.

``decide(evidence, config)`` reads nothing, writes nothing and trains nothing: it looks at the runs
recorded so far (the ledger's records, in the order they were made) and says what to do next:
fit the baseline, train a rung's next trial or its small experiment, skip a rung whose forecast
misses, distil a run that is good enough but too big, or stop, and why. The executor
(:mod:`advisor.advise`) carries actions out and records each result; resuming a killed climb is the
same loop, with the executor finding each action's result already in the ledger. Every decision
can be tested by handing ``decide`` records made by hand.

The same entry point decides for the steps beside the climb, each from its own evidence:
``advise --from`` (:class:`ContinuationEvidence`: the next continuation trial or the stop;
:class:`ResumptionEvidence`: whether and where the climb resumes after it) and the compaction step
(:class:`CompactionEvidence`: the next control or distilled student, or the stop). The choices
around each step of the climb (order the steps, forecast the next one, the warm start, read or
wait for the other workers of a shared study, read a record back or redo it) are actions too
(:mod:`advisor.climb.choices`): the executor decides nothing.

Decisions rest on intervals, not point estimates (:func:`verdicts`): a run passes when the lower
bound of its metric clears the floor, at the configured confidence corrected (Bonferroni) for the
number of candidates the climb may judge on the same validation rows, so that picking the best of
several trials does not turn noise into a pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import overload

from advisor import runkey
from advisor.climb.choices import (
    before_acting,
    is_trial,
    read_back,
    step_to_forecast,
    wait_for_shared,
    warm_start,
)
from advisor.climb.compaction import CompactionEvidence, TrainStudent, next_compaction
from advisor.climb.continuing import (
    ContinuationEvidence,
    Continue,
    ResumeClimb,
    ResumptionEvidence,
    next_continuation,
    resume_after,
)
from advisor.climb.evidence import (
    Action,
    Distil,
    Evidence,
    FitBaseline,
    Probe,
    RungInfo,
    SharedStudy,
    Skip,
    Step,
    Stop,
    Train,
)
from advisor.climb.family import candidates_planned, decision_level, rung_candidates, verdicts
from advisor.climb.forecast import forecast_full
from advisor.climb.growth import growth_gate
from advisor.climb.spending import budget_exhausted, budget_refuses
from advisor.config.settings import Config
from advisor.outcome import Verdict
from advisor.types import Cost, RunResult
from advisor.verdicts.criteria import (
    closest_failure,
    gain,
    gain_per_pflop,
    only_ceilings_failed,
)

__all__ = [
    "Action",
    "CompactionEvidence",
    "Continue",
    "ContinuationEvidence",
    "ResumeClimb",
    "ResumptionEvidence",
    "TrainStudent",
    "Distil",
    "Evidence",
    "FitBaseline",
    "Probe",
    "RungInfo",
    "SharedStudy",
    "Skip",
    "Step",
    "Stop",
    "Train",
    "budget_exhausted",
    "budget_refuses",
    "candidates_planned",
    "decide",
    "decision_level",
    "is_trial",
    "read_back",
    "rung_candidates",
    "step_to_forecast",
    "verdicts",
    "wait_for_shared",
    "warm_start",
]


def _on_rung(run: RunResult, rung: str) -> bool:
    """Whether ``run`` is a trial, small experiment or skip of ``rung`` (what the climb does on it)."""
    return run.key.step == rung and run.key.role in ("trial", "small", "skipped")


# ----------------------------------------------------------------------------- the policy


@overload
def decide(evidence: Evidence, config: Config, rule: str = "interval") -> Action: ...
@overload
def decide(evidence: ContinuationEvidence, config: Config, rule: str = "interval") -> Continue | Stop: ...
@overload
def decide(
    evidence: ResumptionEvidence, config: Config | None = None, rule: str = "interval"
) -> ResumeClimb | Stop: ...
@overload
def decide(
    evidence: CompactionEvidence, config: Config | None = None, rule: str = "interval"
) -> TrainStudent | Stop: ...


def decide(
    evidence: Evidence | ContinuationEvidence | ResumptionEvidence | CompactionEvidence,
    config: Config | None = None,
    rule: str = "interval",
) -> Action | Continue | ResumeClimb | TrainStudent:
    """The next action, from the evidence alone: the climb's, or that of the step the evidence is of.

    ``rule`` is how the climb's runs are judged: ``interval`` (the lower bound must clear the floor)
    or ``point`` (the point estimate alone: greenladder's rule before intervals, kept so the
    reliability benchmark can replay both on the same runs). A continuation's evidence carries its
    verdicts already made; resumption and compaction judge nothing.

    Raises:
        TypeError: the climb's or the continuation's evidence without a config.
    """
    if isinstance(evidence, CompactionEvidence):
        return next_compaction(evidence)
    if isinstance(evidence, ResumptionEvidence):
        return resume_after(evidence)
    if config is None:
        raise TypeError(f"decide: {type(evidence).__name__} needs the config")
    if isinstance(evidence, ContinuationEvidence):
        return next_continuation(evidence, config)
    return before_acting(_climb(evidence, config, rule), evidence, config)


def _climb(evidence: Evidence, config: Config, rule: str) -> Step | Stop:
    """The next action of the climb (see :func:`decide`)."""
    metric = config.criteria.metric
    baseline = evidence.run("baseline")
    if baseline is None:
        return FitBaseline()
    judged = verdicts(evidence, config, rule)
    if judged["baseline"].passed:
        return Stop("the baseline meets every criterion: no transformer was trained", "baseline", "met")
    if baseline.status == "budget":
        return _none_passed(judged, f"the baseline was stopped by the budget: {baseline.message}", "budget")

    budget_run = next((r for r in evidence.runs if r.status == "budget"), None)
    previous_best: RunResult | None = None  # best finished run of the last rung climbed
    reference: RunResult = baseline  # what previous_best's gain is measured against
    curves: list[tuple[float, float]] = []  # (small-experiment score, full score) of rungs below
    for rung in evidence.rungs:
        if rung.optional and rung.name not in config.ladder.rungs:
            continue
        if rung.rows is not None or rung.method == "probe":
            done = _one_run_step(evidence, config, judged, rung, previous_best, reference, budget_run)
            if isinstance(done, RunResult):
                reference, previous_best = (previous_best or reference), done
            elif done is not None:
                return done
            continue
        mine = [r for r in evidence.runs if _on_rung(r, rung.name)]
        trials = [r for r in mine if is_trial(r)]
        # 1. what was already decided on this rung
        stop = _settled(evidence, config, judged, rung.name, trials, budget_run)
        if stop is not None:
            return stop
        skipped = next((r for r in mine if r.status == "skipped"), None)
        if skipped is None and len(trials) < config.tuning.trials_per_rung:
            # 2. before the rung starts: is it worth it, and does it fit?
            if not trials and not any(r.key.role == "small" for r in mine):
                gate = growth_gate(evidence, config, judged, rung) or _gate(
                    evidence, config, judged, rung, previous_best, reference
                )
                if gate is not None:
                    return gate
            action = _next_on_rung(evidence, config, judged, rung, mine, trials, curves)
            if action is not None:
                return action
        # the rung is done: it becomes the reference for the next one
        ok = [r for r in trials if r.status == "ok" and metric in r.metrics]
        small = next((r for r in mine if r.key.role == "small" and r.status == "ok"), None)
        if ok:
            best = max(ok, key=lambda r: r.metrics[metric])
            if small is not None and metric in small.metrics:
                curves.append((small.metrics[metric], best.metrics[metric]))
            if previous_best is not None:
                reference = previous_best
            previous_best = best
    return _none_passed(judged, "every rung of the ladder was tried and none met the criteria")


def _one_run_step(
    evidence: Evidence,
    config: Config,
    judged: Mapping[str, Verdict],
    step: RungInfo,
    previous_best: RunResult | None,
    reference: RunResult,
    budget_run: RunResult | None,
) -> Step | Stop | RunResult | None:
    """A step that is one run: a probe, or a data-size rung (a probe or a fine-tune on the first
    ``step.rows`` training rows). The action it calls for, or its finished run (the next step's
    reference), or None (it failed, or its step was left on its learning curve) and the climb goes
    on. A data-size rung that passes is the recommendation, trained on its rows only; a fine-tune's
    that is too big or slow is distilled like a trial."""
    if evidence.run(runkey.skipped(step.family).run_id) is not None:
        return None
    key = runkey.probe(step.rung) if step.rows is None else runkey.sized(step.family, step.rows)
    run = evidence.run(key.run_id)
    if run is None:
        gate = growth_gate(evidence, config, judged, step) or _gate(
            evidence, config, judged, step, previous_best, reference
        )
        if gate is not None:
            return gate
        return (Probe if step.method == "probe" else Train)(step.rung, key, step.rows)
    if step.method == "finetune":
        settled = _settled(evidence, config, judged, step.name, [run], budget_run)
        if settled is not None:
            return settled
    elif judged[run.run_id].passed:
        return Stop(f"{step.name} meets every criterion: costlier steps were not taken", run.run_id, "met")
    if run.status == "budget":
        return _none_passed(judged, f"{run.run_id} was stopped by the budget: {run.message}", "budget")
    if run.status == "ok" and config.criteria.metric in run.metrics:
        return run
    return None


def _settled(
    evidence: Evidence,
    config: Config,
    judged: Mapping[str, Verdict],
    rung: str,
    trials: Sequence[RunResult],
    budget_run: RunResult | None,
) -> Step | Stop | None:
    """A stop, or a distillation, that the rung's recorded trials already call for."""
    for run in trials:
        if judged[run.run_id].passed:
            return Stop(f"{rung} meets every criterion: larger rungs were not trained", run.run_id, "met")
    too_big = next((r for r in trials if only_ceilings_failed(judged[r.run_id])), None)
    if too_big is not None and config.ladder.distil_on_ceiling:
        student_key = runkey.student(too_big.run_id)
        sid = student_key.run_id
        student = evidence.run(sid)
        failed = ", ".join(judged[too_big.run_id].failed)
        if student is None:
            over = budget_exhausted(config, evidence.spent)
            if over is not None:
                return _none_passed(judged, f"{rung} met the floor but not {failed}; not distilled: {over}", "budget")
            return Distil(too_big.run_id, student_key)
        if judged[sid].passed:  # a "finetune" student: the decide-first check kept the no-teacher control
            how = "distilled" if student.candidate.kind == "distilled" else "trained without the teacher"
            return Stop(f"{rung} met the floor but not {failed}; its student ({how}) meets every criterion", sid, "met")
        if student.status == "budget":
            return _none_passed(
                judged,
                f"{rung} met the floor but not {failed}; {sid} was stopped by the budget: {student.message}",
                "budget",
            )
        return _none_passed(judged, f"{rung} met the floor but not {failed}, nor did its distilled student")
    if budget_run is not None and budget_run.candidate.name == rung:
        return _none_passed(judged, f"{budget_run.run_id} was stopped by the budget: {budget_run.message}", "budget")
    shared = evidence.shared.get(rung)
    if shared is not None and shared.best is not None and shared.best >= config.criteria.floor:
        # checked before any trial budget: a worker never climbs past a rung another worker passed
        return Stop(
            f"another worker sharing the study reached {config.criteria.metric} {shared.best:.3f} on {rung}"
            f"{': ' + shared.where if shared.where else ''}; its run directory holds that model",
            None,
            "met",
        )
    return None


def _gate(
    evidence: Evidence,
    config: Config,
    judged: Mapping[str, Verdict],
    rung: RungInfo,
    previous_best: RunResult | None,
    reference: RunResult,
) -> Step | Stop | None:
    """Refuse to start a rung that breaks a budget or is not worth its compute."""
    crit = config.criteria
    over = budget_exhausted(config, evidence.spent)
    if over is not None:
        return _none_passed(judged, f"stopped before {rung.name}: {over}", "budget")
    forecast = evidence.forecasts.get(rung.name)
    trained = evidence.prior_candidates > 0 or any(
        r.candidate.kind in ("finetune", "probe") and r.status != "skipped" for r in evidence.runs
    )
    if forecast is not None and trained:
        # the first rung always starts (a partial model, stopped by the budget inside the run, is
        # still the best use of a budget smaller than one training); later rungs, and the first
        # rung of a climb resumed after a continuation, must fit
        refused = budget_refuses(config, evidence.spent, forecast)
        if refused is not None:
            return _none_passed(judged, f"stopped before {rung.name}: {refused}", "budget", next_cost=forecast)
    if crit.min_gain_per_pflop is not None and previous_best is not None:
        g = gain(previous_best, reference, crit.metric)
        gpp = gain_per_pflop(g, previous_best.cost) if g is not None else None
        if gpp is not None and gpp < crit.min_gain_per_pflop:
            return _none_passed(
                judged,
                f"stopped before {rung.name}: the last rung gained {gpp:.3g} points per PFLOP, "
                f"below the minimum {crit.min_gain_per_pflop:g}",
            )
    return None


def _next_on_rung(
    evidence: Evidence,
    config: Config,
    judged: Mapping[str, Verdict],
    rung: RungInfo,
    mine: Sequence[RunResult],
    trials: Sequence[RunResult],
    curves: Sequence[tuple[float, float]],
) -> Step | Stop | None:
    """The rung's small experiment, its skip, or its next trial; None when the rung is done."""
    crit = config.criteria
    if config.tuning.small_fraction > 0 and not trials:
        small = next((r for r in mine if r.key.role == "small"), None)
        if small is None:
            return Train(rung.name, runkey.small(rung.name))
        if small.status == "ok" and crit.metric in small.metrics:
            f = forecast_full(
                small.metrics[crit.metric], config.tuning.small_fraction, len(evidence.val_labels), curves
            )
            if f.optimistic < crit.floor:
                return Skip(
                    rung.name,
                    runkey.skipped(rung.name),
                    f"skipped: forecast {crit.metric} {f.mean:.3f} ± {f.sigma:.3f} "
                    f"(optimistic {f.optimistic:.3f}) misses the floor {crit.floor:g}",
                    f.to_dict(),
                )
    shared = evidence.shared.get(rung.name)
    if shared is not None and shared.started >= config.tuning.trials_per_rung:
        return None  # the rung's trial budget was used by the workers sharing the study
    if trials:
        over = budget_exhausted(config, evidence.spent)
        if over is not None:
            return _none_passed(judged, f"stopped during {rung.name}: {over}", "budget")
        last = trials[-1]
        refused = budget_refuses(config, evidence.spent, last.cost)
        if refused is not None:
            return _none_passed(
                judged,
                f"stopped before {rung.name}'s trial {len(trials) + 1}: {refused}",
                "budget",
                next_cost=last.cost,
            )
    return Train(rung.name, runkey.trial(rung.name, len(trials) + 1))


def _none_passed(
    judged: Mapping[str, Verdict], why: str, outcome: str = "not_met", next_cost: Cost | None = None
) -> Stop:
    passing = next((v for v in judged.values() if v.passed), None)
    if passing is not None:  # e.g. a budget-stopped run whose partial model passes
        return Stop(f"{why}; {passing.run_id} meets every criterion", passing.run_id, "met", next_cost)
    return Stop(f"{why}; {closest_failure(judged)}", None, outcome, next_cost)
