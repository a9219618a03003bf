"""Incremental training: continue an earlier run's recommended model on expanded data.

``advise --from RUN_DIR --data EXPANDED`` lands here instead of climbing the ladder again. The
earlier model is judged on the new validation split as it stands, then continued with a schedule
made for continuation (its winning learning rate times ``incremental.lr_factor``, fewer epochs),
tuned by a :class:`~advisor.tuning.RungTuner` that is told the earlier run's trials. What it cost
is set against training the same rung from its pre-trained checkpoint on the same data: measured
with ``incremental.compare_scratch``, otherwise forecast from the earlier run's measured cost, and
the metric difference comes with a paired interval on the same validation rows
(:mod:`advisor.comparison`). A baseline recommendation is simply refitted. Every run goes into the
ledger, so a rerun after a kill reads finished runs back.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from transformers import TrainerCallback

from advisor.baseline import fit_baseline
from advisor.budget import BudgetCallback, FitBudget, Rates, any_budget, evaluation_reserve
from advisor.comparison import compare, forecast_scratch, scaled_cost
from advisor.config import Config
from advisor.continuation import (
    continuation_config,
    earlier_train_texts,
    earlier_trials,
    overlap_notes,
    previous_recommendation,
    recommended_run,
    training_rows,
)
from advisor.cost import Meter
from advisor.counting import MeteringCallback, checkpoint_to
from advisor.criteria import compute_metrics, run_interval
from advisor.criteria import judge as judge_run
from advisor.data import TaskData, column
from advisor.errors import RunDirError
from advisor.flops import encoder_forward_flops
from advisor.head import extend_head
from advisor.inference import predict_labels
from advisor.ledger import Ledger
from advisor.loading import load_for_classification
from advisor.models import load_ladder, materialise
from advisor.outcome import Verdict
from advisor.policy import budget_refuses
from advisor.runkey import RunKey
from advisor.stats import bonferroni
from advisor.train import quiet_libraries, train_run
from advisor.tuning import PruningCallback, RungTuner
from advisor.types import Candidate, Cost, RunResult

Progress = Callable[[str], None]


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
    prev = previous_recommendation(from_dir, data, config)
    rec, name = prev["recommendation"], str(prev["recommendation"]["candidate"]["name"])
    criteria, metric = config.criteria, config.criteria.metric
    baseline = ledger.get("baseline")
    if baseline is None:
        watch = None
        if any_budget(criteria):
            watch = FitBudget(criteria, sum((r.cost for r in ledger.all()), Cost()), Rates.measured(ledger.all()))
        baseline = _record(ledger, fit_baseline(data, config, run_dir, progress=say, budget=watch))
    # decided from intervals, Bonferroni-corrected over the candidates judged here: the baseline, the
    # earlier model as it stands, each continuation trial and the from-scratch comparison
    val_labels, k = column(data.validation, "label"), len(data.label_names)
    level = bonferroni(criteria.confidence, 1 + candidates_judged(config) + later_candidates)

    def judge(run: RunResult, criteria: Any) -> Verdict:
        return judge_run(run, criteria, run_interval(run, metric, val_labels, k, level))

    verdicts = {"baseline": judge(baseline, criteria)}
    if rec["candidate"]["kind"] == "baseline":
        # a TF-IDF model costs next to nothing to fit: refitting it on all the data is the continuation
        passed = verdicts["baseline"].passed
        reason = "the earlier recommendation was the TF-IDF baseline; refitted on the expanded data, it " + (
            "meets every criterion" if passed else f"fails ({'; '.join(verdicts['baseline'].failed)})"
        )
        details = {"incremental": {"from": str(from_dir), "from_run": "baseline", "refitted_baseline": True}}
        return Continued(
            baseline, [], verdicts, "baseline" if passed else None, reason, details, "met" if passed else "not_met"
        )

    earlier_run = recommended_run(prev, from_dir)
    seen = earlier_train_texts(from_dir, say)
    val_texts = column(data.validation, "text")
    unseen_rows = [i for i, t in enumerate(val_texts) if seen is None or t not in seen]
    notes = overlap_notes(seen, len(val_texts) - len(unseen_rows), column(data.test, "text"))
    source = from_dir / "model"
    old_labels = prev["dataset"]["label_names"]
    if config.incremental.extend_head and set(data.label_names) != set(old_labels):
        source = extend_head(source, old_labels, data.label_names, run_dir / "runs" / "head", config)
        notes.append(f"the head was extended to {', '.join(data.label_names)}; earlier classes kept their weights")
    for cb in extra_callbacks:  # leave room for the pass that judges a continuation the budget stops
        if isinstance(cb, BudgetCallback):
            cb.reserve(
                *evaluation_reserve(val_pass_flops(source, data, config), len(data.validation), config.train.eval_rows)
            )
    runs: list[RunResult] = []
    earlier = ledger.finished(RunKey("earlier", name).run_id)
    if earlier is None:
        say(f"{name}: judging the earlier model on the new validation split")
        earlier = _record(ledger, _judge_earlier(name, source, from_dir, data, config))
    else:
        say(f"{earlier.run_id}: read back from the ledger (not judged again)")
    runs.append(earlier)
    verdicts[earlier.run_id] = judge(earlier, criteria)
    spent = baseline.cost + earlier.cost
    train_data, schedule = training_rows(data, seen, config)
    cont = continuation_config(config, earlier_run)
    schedule.update({k: getattr(cont.train, k) for k in ("learning_rate", "epochs", "warmup_ratio")})
    warm = earlier_trials(from_dir, name, metric, cont)
    done = [r for r in ledger.all() if r.key.role == "continuation" and r.key.step == name and r.status != "failed"]
    tuner = RungTuner(
        cont,
        previous=[*warm, *[(r.hyperparameters, r.metrics.get(metric) if r.status == "ok" else None) for r in done]],
        seed=config.train.seed,
        prune_after=math.ceil(len(train_data.train) / config.train.batch_size),
    )
    old_train = prev.get("dataset", {}).get("splits", {}).get("train", {})
    scratch_forecast = forecast_scratch(earlier_run, old_train, data.summary()["splits"]["train"])
    # a first trial's cost, for the budget check: from-scratch scaled by epochs and rows trained
    scale = (cont.train.epochs / float(earlier_run.hyperparameters.get("epochs") or config.train.epochs)) * (
        len(train_data.train) / len(data.train)
    )
    first_forecast = scaled_cost(scratch_forecast[0], scale)
    candidate = Candidate(name=name, kind="incremental", source=str(source), parent_run=str(from_dir))
    continued: list[RunResult] = []
    recommendation: str | None = None
    stop_reason, outcome = "", "not_met"
    for i in range(config.tuning.trials_per_rung):
        key = RunKey("continuation", name, i + 1)
        run_id = key.run_id
        run = ledger.finished(run_id)
        if run is not None:
            say(f"{run_id}: read back from the ledger (not retrained)")
        else:
            forecast = continued[-1].cost if continued else first_forecast
            if over := budget_refuses(config, spent, forecast):
                stop_reason, outcome = f"stopped before {run_id}: {over}", "budget"
                break
            trial, hp, origin = tuner.ask()
            pruner = PruningCallback(trial, metric)
            hp = {**hp, "batch_size": config.train.batch_size}
            run = train_run(
                candidate,
                str(source),
                train_data,
                cont,
                run_dir,
                key,
                hp,
                extra_callbacks=[pruner, *extra_callbacks, checkpoint_to(ledger, run_id)],
                progress=say,
            )
            run = dataclasses.replace(run, details={**run.details, "trial_origin": f"continuation {origin}"})
            tuner.tell(trial, run.metrics.get(metric) if run.status == "ok" else None, pruned=bool(pruner.stop_message))
            _record(ledger, run)
        runs.append(run)
        continued.append(run)
        spent = spent + run.cost
        if i == 0:
            losses = [h.get("eval_loss") for h in run.details.get("eval_history", [])]
            tuner.queue_probe(run.hyperparameters, losses, ok=run.status == "ok")
        verdicts[run_id] = judge(run, criteria)
        if run.status == "budget":
            outcome = "budget"
        if verdicts[run_id].passed:
            recommendation = run_id
            stop_reason = f"{name} continued from {from_dir} meets every criterion"
            break

    scratch = _scratch(config, prev, earlier_run, data, run_dir, ledger, say, extra_callbacks)
    if scratch is not None:
        runs.append(scratch)
        verdicts[scratch.run_id] = judge(scratch, criteria)
    best = max((r for r in continued if r.status == "ok"), key=lambda r: r.metrics.get(metric, 0.0), default=None)
    if recommendation is None:
        if scratch is not None and verdicts[scratch.run_id].passed:
            recommendation = scratch.run_id
        elif verdicts["baseline"].passed:
            recommendation = "baseline"
        failed = "; ".join(verdicts[best.run_id].failed) if best is not None else "no continuation finished"
        stop_reason = (stop_reason + "; " if stop_reason else "") + f"{name} continued from {from_dir} fails ({failed})"
    y_val = column(data.validation, "label")
    spent_runs = [earlier, *continued]  # judging the earlier model is part of what continuing cost
    comparison = compare(
        metric, len(data.label_names), y_val, unseen_rows, spent_runs, best, scratch, scratch_forecast, [earlier]
    )
    comparison.update(
        {
            "from": str(from_dir),
            "from_run": earlier_run.run_id,
            "continued_runs": [r.run_id for r in continued],  # the cost also holds judging the earlier model
            "from_hyperparameters": dict(earlier_run.hyperparameters),
            "schedule": schedule,
            "warm_start_trials": len(warm),
            "notes": notes,
        }
    )
    outcome = "met" if recommendation is not None else outcome
    return Continued(baseline, runs, verdicts, recommendation, stop_reason, {"incremental": comparison}, outcome)


# ----------------------------------------------------------------------------- runs


def val_pass_flops(source: Path, data: TaskData, config: Config) -> float:
    """Forecast FLOPs of one validation pass of the model at ``source``: the meter's forward formula
    over the split's token lengths, as the climb forecasts a rung's (``Climb._val_pass_flops``)."""
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(source))
    model_config = AutoConfig.from_pretrained(str(source))
    limit = min(config.train.max_length, tok.model_max_length)
    ids = tok(column(data.validation, "text"), truncation=True, max_length=limit)["input_ids"]
    return sum(encoder_forward_flops(model_config, len(x), len(data.label_names)) for x in ids)


def _judge_earlier(name: str, source: Path, from_dir: Path, data: TaskData, config: Config) -> RunResult:
    """The earlier model as it stands, judged on the new validation split (a forward pass, metered)."""
    t = config.train
    with Meter(config.metering, phase=f"judge {name}-earlier") as meter:
        with quiet_libraries():
            model, tok = load_for_classification(
                str(source), data.label_names, allow_pickle=t.allow_pickle, trust_remote_code=t.trust_remote_code
            )
        counter = MeteringCallback(meter, num_labels=len(data.label_names))
        counter.attach(model)
        preds = predict_labels(model, tok, column(data.validation, "text"), t.max_length)
        counter.close()
    return RunResult(
        key=RunKey("earlier", name),
        candidate=Candidate(name=name, kind="incremental", source=str(source), parent_run=str(from_dir)),
        hyperparameters={},
        status="ok",
        metrics=compute_metrics(column(data.validation, "label"), preds, data.label_names),
        cost=meter.cost,
        message="the earlier model, not trained again, judged on the new validation split",
        val_predictions=tuple(int(p) for p in preds),
    )


def _scratch(
    config: Config,
    prev: dict[str, Any],
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
    name = earlier.candidate.name
    key = RunKey("scratch", name)
    run_id = key.run_id
    run = ledger.finished(run_id)
    if run is not None:
        say(f"{run_id}: read back from the ledger (not retrained)")
        return run
    ladder_name = prev.get("config", {}).get("ladder", {}).get("name", config.ladder.name)
    rungs = {r.name: r for r in load_ladder(ladder_name)}
    if name not in rungs:
        raise RunDirError(
            f"--compare-scratch: the ladder {ladder_name!r} of the earlier run has no rung {name!r}; "
            "run without --compare-scratch (the saving is then forecast)."
        )
    rung = rungs[name]
    source = str(materialise(rung, config.ladder.cache_dir, progress=say, allow_pickle=config.train.allow_pickle))
    hp = {
        k: earlier.hyperparameters[k]
        for k in ("learning_rate", "epochs", "warmup_ratio")
        if k in earlier.hyperparameters
    }
    candidate = Candidate(name=name, kind="finetune", source=rung.source)
    hp["batch_size"] = config.train.batch_size
    watch = [*extra_callbacks, checkpoint_to(ledger, run_id)]
    run = train_run(candidate, source, data, config, run_dir, key, hp, extra_callbacks=watch, progress=say)
    run = dataclasses.replace(
        run, details={**run.details, "trial_origin": "from the pre-trained checkpoint, for comparison"}
    )
    return _record(ledger, run)


def _record(ledger: Ledger, run: RunResult) -> RunResult:
    ledger.add(run)
    return run
