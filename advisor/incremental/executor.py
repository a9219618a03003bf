"""Incremental training: continue an earlier run's recommended model on expanded data.

``advise --from RUN_DIR --data EXPANDED`` lands here instead of climbing the ladder again. The
earlier model is judged on the new validation split as it stands, then continued with a schedule
made for continuation (its winning learning rate times ``incremental.lr_factor``, fewer epochs),
tuned by a :class:`~advisor.climb.tuning.RungTuner` that is told the earlier run's trials. What it cost
is set against training the same rung from its pre-trained checkpoint on the same data: measured
with ``incremental.compare_scratch``, otherwise forecast from the earlier run's measured cost, and
the metric difference comes with a paired interval on the same validation rows
(:mod:`advisor.incremental.comparison`). A baseline recommendation is simply refitted. Every run goes into the
ledger, so a rerun after a kill reads finished runs back.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from transformers import TrainerCallback

from advisor.climb.budget import BudgetCallback, FitBudget, Rates, evaluation_reserve
from advisor.climb.continuing import ContinuationEvidence, best_trial, continuation_recommendation
from advisor.climb.evidence import Stop
from advisor.climb.policy import decide
from advisor.climb.spending import any_budget
from advisor.climb.tuning import PruningCallback, RungTuner, told
from advisor.config.settings import Config
from advisor.data.task import TaskData, column
from advisor.incremental.comparison import compare, forecast_scratch, scaled_cost
from advisor.incremental.earlier import Earlier, from_checkpoint, judge_earlier, prepare_earlier, val_pass_flops
from advisor.incremental.inputs import continuation_config, earlier_trials, previous_recommendation, training_rows
from advisor.outcome import Report, Verdict
from advisor.runkey import RunKey
from advisor.store.ledger import Ledger
from advisor.training.baseline import fit_baseline
from advisor.training.counting import checkpoint_to
from advisor.training.train import train_run
from advisor.types import Candidate, Cost, RunResult
from advisor.verdicts.criteria import judge as judge_run
from advisor.verdicts.criteria import run_interval
from advisor.verdicts.stats import bonferroni

Progress = Callable[[str], None]
Judge = Callable[[RunResult], Verdict]


class Continued(NamedTuple):
    """What continuing produced, for the advisor to finish like any climb."""

    baseline: RunResult
    runs: Sequence[RunResult]
    verdicts: dict[str, Verdict]
    recommendation: str | None
    stop_reason: str
    details: dict[str, Any]
    #: ``met``, ``not_met``, or ``budget`` (a continuation trial did not fit in what was left)
    outcome: str = "not_met"


def candidates_judged(config: Config) -> int:
    """Runs a continuation judges on the validation rows besides the baseline: the earlier model as
    it stands, each continuation trial and the from-scratch comparison (its Bonferroni family)."""
    return 2 + config.tuning.trials_per_rung


@dataclasses.dataclass(frozen=True)
class _Setting:
    """What every step of a continuation works with."""

    config: Config
    from_dir: Path
    data: TaskData
    run_dir: Path
    ledger: Ledger
    say: Progress
    extra_callbacks: Sequence[TrainerCallback]


class _Plan(NamedTuple):
    """The continuation trials' settings, tuner and the forecasts the budget checks against."""

    train_data: TaskData
    config: Config  # the continuation's training config
    schedule: dict[str, Any]
    warm: list[tuple[dict[str, Any], float | None]]  # the earlier run's trials the tuner was told
    tuner: RungTuner
    scratch_forecast: tuple[Cost, str]
    first_forecast: Cost


class _Trials(NamedTuple):
    """What the continuation trials produced, and how the policy ended them."""

    runs: list[RunResult]
    ended: Stop


def continue_from(
    config: Config,
    from_dir: Path,
    data: TaskData,
    run_dir: Path,
    ledger: Ledger,
    say: Progress,
    extra_callbacks: Sequence[TrainerCallback] = (),
    later_candidates: int = 0,
) -> Continued:
    """Continue the earlier run's recommended model on the (expanded) data instead of climbing again.

    Args:
        extra_callbacks: Trainer callbacks for every training here (e.g. a budget callback).
        later_candidates: runs a climb resumed after a failed continuation may judge on the same
            validation rows; counted in the Bonferroni family from the start, so a verdict here does
            not depend on whether the climb follows.
    """
    s = _Setting(config, from_dir, data, run_dir, ledger, say, extra_callbacks)
    prev = previous_recommendation(from_dir, data, config)
    baseline = _baseline(s)
    judge = _validation_judge(config, data, later_candidates)
    verdicts = {"baseline": judge(baseline)}
    if prev.recommended is None or prev.recommended.candidate.kind == "baseline":
        return _refitted_baseline(baseline, verdicts, from_dir)
    earlier = prepare_earlier(prev, from_dir, data, run_dir, config, say)
    _reserve_evaluation(s, earlier.source)
    judged = _judged_earlier(s, earlier)
    verdicts[judged.run_id] = judge(judged)
    plan = _plan(s, prev, earlier)
    trials = _run_trials(s, plan, earlier, baseline.cost + judged.cost, judge, verdicts)
    scratch = _scratch(config, prev, earlier.run, data, run_dir, ledger, say, extra_callbacks)
    if scratch is not None:
        verdicts[scratch.run_id] = judge(scratch)
    best = best_trial(trials.runs, config.criteria.metric)
    origin = str(from_dir)
    recommendation, stop_reason = continuation_recommendation(
        earlier.name, origin, trials.ended, best, scratch, verdicts
    )
    comparison = _comparison(s, earlier, judged, plan, trials.runs, best, scratch)
    outcome = "met" if recommendation is not None else trials.ended.outcome
    runs = [judged, *trials.runs, *([scratch] if scratch is not None else [])]
    return Continued(baseline, runs, verdicts, recommendation, stop_reason, {"incremental": comparison}, outcome)


def _baseline(s: _Setting) -> RunResult:
    """The TF-IDF baseline on the expanded data: read back from the ledger, or fitted (within budget)."""
    baseline = s.ledger.get("baseline")
    if baseline is not None:
        return baseline
    watch = None
    if any_budget(s.config.criteria):
        spent = sum((r.cost for r in s.ledger.all()), Cost())
        watch = FitBudget(s.config.criteria, spent, Rates.measured(s.ledger.all()))
    return _record(s.ledger, fit_baseline(s.data, s.config, s.run_dir, progress=s.say, budget=watch))


def _validation_judge(config: Config, data: TaskData, later_candidates: int) -> Judge:
    """Judge a run from its interval on the validation rows, Bonferroni-corrected over the candidates
    judged here: the baseline, the earlier model as it stands, each continuation trial and the
    from-scratch comparison (and the runs of a climb that may follow)."""
    criteria, metric = config.criteria, config.criteria.metric
    val_labels, k = column(data.validation, "label"), len(data.label_names)
    level = bonferroni(criteria.confidence, 1 + candidates_judged(config) + later_candidates)

    def judge(run: RunResult) -> Verdict:
        return judge_run(run, criteria, run_interval(run, metric, val_labels, k, level))

    return judge


def _refitted_baseline(baseline: RunResult, verdicts: dict[str, Verdict], from_dir: Path) -> Continued:
    """An earlier TF-IDF recommendation: a TF-IDF model costs next to nothing to fit, so refitting it
    on all the data is the continuation."""
    passed = verdicts["baseline"].passed
    reason = "the earlier recommendation was the TF-IDF baseline; refitted on the expanded data, it " + (
        "meets every criterion" if passed else f"fails ({'; '.join(verdicts['baseline'].failed)})"
    )
    details = {"incremental": {"from": str(from_dir), "from_run": "baseline", "refitted_baseline": True}}
    return Continued(
        baseline, [], verdicts, "baseline" if passed else None, reason, details, "met" if passed else "not_met"
    )


def _reserve_evaluation(s: _Setting, source: Path) -> None:
    """Leave room in every budget callback for the pass that judges a continuation the budget stops."""
    for cb in s.extra_callbacks:
        if isinstance(cb, BudgetCallback):
            val_flops = val_pass_flops(source, s.data, s.config)
            cb.reserve(*evaluation_reserve(val_flops, len(s.data.validation), s.config.train.eval_rows))


def _judged_earlier(s: _Setting, earlier: Earlier) -> RunResult:
    """The earlier model as it stands on the new validation split: read back from the ledger, or judged."""
    name = earlier.name
    judged = s.ledger.finished(RunKey("earlier", name).run_id)
    if judged is not None:
        s.say(f"{judged.run_id}: read back from the ledger (not judged again)")
        return judged
    s.say(f"{name}: judging the earlier model on the new validation split")
    return _record(s.ledger, judge_earlier(name, earlier.source, s.from_dir, s.data, s.config))


def _plan(s: _Setting, prev: Report, earlier: Earlier) -> _Plan:
    """The rows and schedule to continue with, a tuner told the earlier trials and those finished
    here, and the forecasts: training from scratch, and a first continuation trial (from-scratch
    scaled by epochs and rows trained)."""
    config, name, metric = s.config, earlier.name, s.config.criteria.metric
    train_data, schedule = training_rows(s.data, earlier.seen, config)
    cont = continuation_config(config, earlier.run)
    schedule.update({k: getattr(cont.train, k) for k in ("learning_rate", "epochs", "warmup_ratio")})
    warm = earlier_trials(s.from_dir, name, metric, cont)
    done = s.ledger.finished_of("continuation", name)
    tuner = RungTuner(
        cont,
        previous=[*warm, *told(done, metric)],
        seed=config.train.seed,
        prune_after=math.ceil(len(train_data.train) / config.train.batch_size),
    )
    old_train = prev.dataset.get("splits", {}).get("train", {})
    scratch_forecast = forecast_scratch(earlier.run, old_train, s.data.summary()["splits"]["train"])
    earlier_epochs = float(earlier.run.hyperparameters.get("epochs") or config.train.epochs)
    scale = (cont.train.epochs / earlier_epochs) * (len(train_data.train) / len(s.data.train))
    first_forecast = scaled_cost(scratch_forecast[0], scale)
    return _Plan(train_data, cont, schedule, warm, tuner, scratch_forecast, first_forecast)


def _run_trials(
    s: _Setting, plan: _Plan, earlier: Earlier, spent: Cost, judge: Judge, verdicts: dict[str, Verdict]
) -> _Trials:
    """Carry out the continuation trials the policy asks for (:func:`advisor.climb.policy.decide` on a
    :class:`ContinuationEvidence`), each read back from the ledger or trained, judging each into
    ``verdicts``, until it says stop."""
    name = earlier.name
    candidate = Candidate(name=name, kind="incremental", source=str(earlier.source), parent_run=str(s.from_dir))
    continued: list[RunResult] = []
    # what a rerun reads back: trials trained from here on are appended to ``continued`` as they finish
    recorded = frozenset(r.run_id for r in s.ledger.finished_of("continuation", name))
    while True:
        evidence = ContinuationEvidence(
            name, str(s.from_dir), tuple(continued), dict(verdicts), recorded, spent, plan.first_forecast
        )
        action = decide(evidence, s.config)
        if isinstance(action, Stop):
            return _Trials(continued, action)
        run = s.ledger.finished(action.run_id)
        if run is not None:
            s.say(f"{action.run_id}: read back from the ledger (not retrained)")
        else:
            run = _train_trial(s, plan, candidate, action.key)
        if not continued:  # the first trial's curve queues the tuner's learning-rate probe
            losses = [e.loss for e in run.evaluations]
            plan.tuner.queue_probe(run.hyperparameters, losses, ok=run.status == "ok")
        continued.append(run)
        spent = spent + run.cost
        verdicts[run.run_id] = judge(run)


def _train_trial(s: _Setting, plan: _Plan, candidate: Candidate, key: RunKey) -> RunResult:
    """Train one continuation trial with the tuner's next settings, tell the tuner, record the run."""
    metric, run_id = s.config.criteria.metric, key.run_id
    trial, hp, origin = plan.tuner.ask()
    pruner = PruningCallback(trial, metric)
    hp = {**hp, "batch_size": s.config.train.batch_size}
    run = train_run(
        candidate,
        candidate.source,
        plan.train_data,
        plan.config,
        s.run_dir,
        key,
        hp,
        extra_callbacks=[pruner, *s.extra_callbacks, checkpoint_to(s.ledger, run_id)],
        progress=s.say,
    )
    run = dataclasses.replace(run, details={**run.details, "trial_origin": f"continuation {origin}"})
    plan.tuner.tell(trial, run.metrics.get(metric) if run.status == "ok" else None, pruned=bool(pruner.stop_message))
    return _record(s.ledger, run)


def _comparison(
    s: _Setting,
    earlier: Earlier,
    judged: RunResult,
    plan: _Plan,
    continued: Sequence[RunResult],
    best: RunResult | None,
    scratch: RunResult | None,
) -> dict[str, Any]:
    """What continuing cost and gained against training from scratch (measured or forecast), paired
    on the same validation rows, with where the continuation started from."""
    y_val = column(s.data.validation, "label")
    spent_runs = [judged, *continued]  # judging the earlier model is part of what continuing cost
    metric, k = s.config.criteria.metric, len(s.data.label_names)
    comparison = compare(
        metric, k, y_val, earlier.unseen_rows, spent_runs, best, scratch, plan.scratch_forecast, [judged]
    )
    comparison.update(
        {
            "from": str(s.from_dir),
            "from_run": earlier.run.run_id,
            "continued_runs": [r.run_id for r in continued],  # the cost also holds judging the earlier model
            "from_hyperparameters": dict(earlier.run.hyperparameters),
            "schedule": plan.schedule,
            "warm_start_trials": len(plan.warm),
            "notes": earlier.notes,
        }
    )
    return comparison


# ----------------------------------------------------------------------------- runs


def _scratch(
    config: Config,
    prev: Report,
    earlier: RunResult,
    data: TaskData,
    run_dir: Path,
    ledger: Ledger,
    say: Progress,
    extra_callbacks: Sequence[TrainerCallback],
) -> RunResult | None:
    """With ``incremental.compare_scratch``: the same rung trained from its pre-trained checkpoint on
    the expanded data, with the earlier winning settings (measured, for the comparison)."""
    if not config.incremental.compare_scratch:
        return None
    key = RunKey("scratch", earlier.candidate.name)
    run_id = key.run_id
    run = ledger.finished(run_id)
    if run is not None:
        say(f"{run_id}: read back from the ledger (not retrained)")
        return run
    candidate, source, hp = from_checkpoint(config, prev, earlier, say)
    watch = [*extra_callbacks, checkpoint_to(ledger, run_id)]
    run = train_run(candidate, source, data, config, run_dir, key, hp, extra_callbacks=watch, progress=say)
    run = dataclasses.replace(
        run, details={**run.details, "trial_origin": "from the pre-trained checkpoint, for comparison"}
    )
    return _record(ledger, run)


def _record(ledger: Ledger, run: RunResult) -> RunResult:
    ledger.add(run)
    return run
