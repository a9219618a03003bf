"""The climb: baseline first, then the ladder smallest first, until the criteria say stop.

Choices use the validation split only; the test split is touched once, for the final evaluation
of the baseline and of the recommendation. Every finished run goes into the ledger at once, so a
rerun of the same command reads it back instead of training again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from advisor import distributed
from advisor.baseline import fit_baseline
from advisor.card import model_card
from advisor.compact import distil_run, only_ceilings_failed
from advisor.config import Config, save_config
from advisor.cost import Meter, MeteringCallback
from advisor.criteria import (
    closest_failure,
    compute_metrics,
    gain,
    gain_per_pflop,
    judge,
    validate_metric_name,
    would_exceed_budget,
)
from advisor.data import TaskData, column, load_task_data
from advisor.energy import low_carbon_alternatives
from advisor.errors import DataError, RunDirError
from advisor.forecast import Forecast, forecast_full
from advisor.ledger import Ledger, fault_point, rank_run_dir
from advisor.models import (
    candidate_for,
    check_ladder,
    is_safe_name,
    load_for_classification,
    load_ladder,
    materialise,
)
from advisor.report import write_reports
from advisor.train import dir_size_mb, predict_labels, quiet_libraries, train_run
from advisor.tuning import PruningCallback, RungTuner
from advisor.types import Candidate, Cost, Report, RunResult, Verdict

Progress = Callable[[str], None]


def _fingerprint(config: Config) -> str:
    """What must not change for a run directory to be resumed: the task, the data and its split."""
    d = config.data
    key = json.dumps(
        [
            config.task,
            d.source,
            d.text_column,
            d.label_column,
            d.validation_fraction,
            d.test_fraction,
            d.split_seed,
            config.train.max_length,
            config.train.seed,
        ]
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def prepare_run_dir(path: str | Path) -> Path:
    """Create the run directory and check it is writable, without touching anything inside."""
    run_dir = Path(path).expanduser()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(
            f"Cannot create the run directory {run_dir} ({exc.strerror}). Pass a writable --out."
        ) from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise RunDirError(f"The run directory {run_dir} is not writable. Pass a writable --out.")
    return run_dir


def _forecast_cost(previous: RunResult | None, rung_params: int | None) -> Cost | None:
    """A rough cost forecast for the next rung: the last rung's cost scaled by non-embedding parameters.

    Training FLOPs grow with N (6·N·D, Kaplan et al. 2020) at fixed data, so scaling by the
    parameter ratio is the first-order forecast; it is only used to refuse rungs that would break
    a budget outright.
    """
    if previous is None or not rung_params or not previous.candidate.params_non_embedding:
        return None
    ratio = rung_params / previous.candidate.params_non_embedding
    c = previous.cost
    return Cost(
        wall_s=c.wall_s * ratio,
        train_flops=c.train_flops * ratio,
        eval_flops=c.eval_flops * ratio,
        energy_cpu_kwh=c.energy_cpu_kwh * ratio,
        energy_gpu_kwh=c.energy_gpu_kwh * ratio,
        energy_ram_kwh=c.energy_ram_kwh * ratio,
    )


def _evaluate_on_test(run: RunResult, run_dir: Path, data: TaskData, config: Config, ledger: Ledger) -> RunResult:
    """Final evaluation of the recommendation on the test split (cached in the ledger's meta)."""
    key = f"test:{run.run_id}"
    cached = ledger.get_meta(key)
    if cached is None:
        if run.candidate.kind == "baseline":
            return run
        with Meter(config.metering, phase=f"test {run.run_id}") as meter:
            with quiet_libraries():
                model, tok = load_for_classification(str(run_dir / str(run.artifact)), data.label_names)
            counter = MeteringCallback(meter, num_labels=len(data.label_names))
            counter.attach(model)  # the test pass's FLOPs, counted like every validation pass
            preds = predict_labels(model, tok, column(data.test, "text"), config.train.max_length)
            counter.close()
            metrics = compute_metrics(column(data.test, "label"), preds, data.label_names)
        cached = {"metrics": metrics, "cost": meter.cost.to_dict()}
        ledger.set_meta(key, cached)
    details = {**run.details, "test_cost": cached["cost"]}
    return dataclasses.replace(run, test_metrics=cached["metrics"], details=details)


def _publish(report: Report, run_dir: Path, data: TaskData, keep_checkpoints: bool, ledger: Ledger) -> float:
    """Copy the recommended model to ``run_dir/model`` with its card; delete unneeded checkpoints.

    Returns the disk space freed, in MB (remembered in the ledger so a rerun reports it too).
    """
    rec = report.recommended
    dest = run_dir / "model"
    if rec is not None and rec.artifact:
        src = run_dir / rec.artifact
        if src.exists():
            tmp = run_dir / ".model-tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            if src.is_dir():
                shutil.copytree(src, tmp)
            else:
                tmp.mkdir()
                shutil.copy2(src, tmp / src.name)
            (tmp / "labels.json").write_text(json.dumps(list(data.label_names)), encoding="utf-8")
            (tmp / "README.md").write_text(model_card(report, rec), encoding="utf-8")
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(tmp, dest)
    freed = float(ledger.get_meta("disk_freed_mb") or 0.0)
    if not keep_checkpoints:
        for run in report.runs:
            if run.artifact and run.run_id != report.recommendation and run.candidate.kind != "baseline":
                path = run_dir / run.artifact
                if path.exists():
                    freed += dir_size_mb(path)
                    shutil.rmtree(path, ignore_errors=True)
        ledger.set_meta("disk_freed_mb", freed)
    return freed


def advise(config: Config, *, from_run: str | Path | None = None, progress: Progress | None = None) -> Report:
    """Find the smallest model that meets ``config.criteria``; write reports and the model to the run dir.

    Args:
        config: the resolved configuration (see ``advisor.config.build_config``).
        from_run: an earlier run directory whose recommended model is continued on the (expanded)
            data instead of climbing the ladder again (incremental training).
        progress: receives one line per step of work.

    Returns:
        The Report (also written as report.json, report.md and report.html in the run directory).
    """
    say = progress or (lambda _m: None)
    # validate the data before anything is written: bad input leaves no run directory behind
    data = load_task_data(config.data, progress=say)
    validate_metric_name(config.criteria.metric, len(data.label_names))
    if from_run is None:  # a bad ladder or model fails now, not hours into the climb
        check_ladder(
            config.ladder, allow_pickle=config.train.allow_pickle, trust_remote_code=config.train.trust_remote_code
        )
    if from_run is not None:
        _previous_recommendation(Path(from_run), data)  # refuse bad --from before anything is written
    # a multi-process job (accelerate launch): rank 0 owns run_dir, the others work in a scratch copy
    run_dir = distributed.from_main(lambda: prepare_run_dir(config.output.out))
    with rank_run_dir(run_dir) as run_dir, Ledger(run_dir) as ledger:
        fp = _fingerprint(config)
        recorded = ledger.get_meta("fingerprint")
        if recorded is not None and recorded != fp:
            raise RunDirError(
                f"{run_dir} holds runs made on other data or settings. Pass a new --out, or rerun with the original settings."
            )
        ledger.set_meta("fingerprint", fp)
        save_config(config, run_dir / "config.yaml")
        for w in data.warnings:
            say(f"warning: {w}")
        if from_run is not None:
            return _incremental(config, Path(from_run), data, run_dir, ledger, say)
        return _climb(config, data, run_dir, ledger, say)


def _record(ledger: Ledger, run: RunResult) -> RunResult:
    run = distributed.agree(run)  # one record per job: rank 0's, costed over all ranks
    ledger.add(run)
    return run


def _climb(config: Config, data: TaskData, run_dir: Path, ledger: Ledger, say: Progress) -> Report:
    criteria = config.criteria
    metric = criteria.metric
    runs: list[RunResult] = []
    verdicts: dict[str, Verdict] = {}
    baseline = ledger.get("baseline")
    if baseline is None:
        baseline = fit_baseline(data, config, run_dir, progress=say)
        fault_point("baseline")  # test-only crash injection (see advisor.ledger.fault_point)
        baseline = _record(ledger, baseline)
    else:
        say("baseline: read back from the ledger (not refitted)")
    verdicts["baseline"] = judge(baseline, criteria)
    spent = baseline.cost
    recommendation: str | None = "baseline" if verdicts["baseline"].passed else None
    stop_reason = "the baseline meets every criterion: no transformer was trained" if recommendation else ""
    if recommendation is None:
        say(f"baseline fails: {'; '.join(r for r in verdicts['baseline'].reasons)}")
        rungs = load_ladder(config.ladder.name)
        if config.ladder.rungs:
            wanted = set(config.ladder.rungs)
            rungs = tuple(r for r in rungs if r.name in wanted)
        previous_best: RunResult | None = None
        reference: RunResult = baseline  # what previous_best's gain is measured against
        warm: dict[str, Any] | None = None
        curves: list[tuple[float, float]] = []  # (small-experiment score, full score) of rungs below
        too_big: RunResult | None = None  # met the floor, failed only ceilings
        stop_reason = "every rung of the ladder was tried and none met the criteria"
        for rung in rungs:
            if rung.optional and rung.name not in config.ladder.rungs:
                say(f"{rung.name}: optional rung skipped (add it with --set ladder.rungs=[...] after fetching it)")
                continue
            forecast = _forecast_cost(previous_best, rung.params_non_embedding)
            over = would_exceed_budget(criteria, spent, forecast) if forecast is not None else None
            if over:
                stop_reason = f"stopped before {rung.name}: {over}"
                break
            if criteria.min_gain_per_pflop is not None and previous_best is not None and runs:
                # the same gain the report's pts/PFLOP column shows: over the rung below's best run
                g = gain(previous_best, reference, metric)
                gpp = gain_per_pflop(g, previous_best.cost) if g is not None else None
                if gpp is not None and gpp < criteria.min_gain_per_pflop:
                    stop_reason = (
                        f"stopped before {rung.name}: the last rung gained {gpp:.3g} points per PFLOP, "
                        f"below the minimum {criteria.min_gain_per_pflop:g}"
                    )
                    break
            source = str(
                materialise(rung, config.ladder.cache_dir, progress=say, allow_pickle=config.train.allow_pickle)
            )
            rung_forecast: Forecast | None = None
            if config.tuning.small_fraction > 0:
                small, rung_forecast = _small_experiment(config, rung, source, data, run_dir, ledger, curves, say)
                runs.append(small)
                spent = spent + small.cost
                if rung_forecast is not None and rung_forecast.optimistic < criteria.floor:
                    skipped = RunResult(
                        run_id=f"{rung.name}-skipped",
                        candidate=candidate_for(rung),
                        hyperparameters={},
                        status="skipped",
                        metrics={},
                        cost=Cost(),
                        message=(
                            f"skipped: forecast {metric} {rung_forecast.mean:.3f} ± {rung_forecast.sigma:.3f} "
                            f"(optimistic {rung_forecast.optimistic:.3f}) misses the floor {criteria.floor:g}"
                        ),
                        details={"forecast": rung_forecast.to_dict()},
                    )
                    say(f"{rung.name}: {skipped.message}")
                    runs.append(skipped)
                    verdicts[skipped.run_id] = judge(skipped, criteria)
                    continue
            done = [
                r
                for r in ledger.all()
                if r.candidate.name == rung.name and r.run_id.startswith(f"{rung.name}-t") and r.status != "failed"
            ]
            tuner = RungTuner(
                config,
                previous=[(r.hyperparameters, r.metrics.get(metric) if r.status == "ok" else None) for r in done],
                warm_start=warm,
                # workers sharing a study must not propose the same settings: each gets its own seed
                seed=config.train.seed + (zlib.crc32(str(run_dir.resolve()).encode()) if config.tuning.storage else 0),
                study_name=f"greenladder-{_fingerprint(config)}-{rung.name}",
                prune_after=math.ceil(len(data.train) / config.train.batch_size),
                worker=str(run_dir.resolve()),
            )
            rung_runs: list[RunResult] = []
            found_elsewhere: float | None = None
            for i in range(config.tuning.trials_per_rung):
                run_id = f"{rung.name}-t{i + 1}"
                run = ledger.get(run_id)
                if run is not None and run.status == "failed":
                    say(f"{run_id}: failed last time ({run.message}); trying it again")
                    run = None
                if run is not None:
                    say(f"{run_id}: read back from the ledger (not retrained)")
                else:
                    # found-elsewhere first: a rung another worker already passed ends the climb here
                    # even when the trial budget is spent, else this worker would go on to the next rung
                    best_shared = tuner.best_value() if tuner.shared else None
                    if best_shared is not None and best_shared >= criteria.floor:
                        found_elsewhere = best_shared
                        break
                    if tuner.started() >= config.tuning.trials_per_rung:
                        say(f"{rung.name}: the trial budget was used by other workers sharing the study")
                        best_shared = tuner.wait_for_others(say)  # one of theirs may yet pass this rung
                        if best_shared is not None and best_shared >= criteria.floor:
                            found_elsewhere = best_shared
                        break
                    trial, hp, origin = tuner.ask()
                    pruner = PruningCallback(trial, metric)
                    hp = {**hp, "batch_size": config.train.batch_size}
                    run = train_run(
                        candidate_for(rung),
                        source,
                        data,
                        config,
                        run_dir,
                        run_id,
                        hp,
                        extra_callbacks=[pruner],
                        progress=say,
                    )
                    extra: dict[str, Any] = {"trial_origin": origin}
                    if rung_forecast is not None:
                        extra["forecast"] = rung_forecast.to_dict()
                    run = dataclasses.replace(run, details={**run.details, **extra})
                    tuner.tell(
                        trial,
                        run.metrics.get(metric) if run.status == "ok" else None,
                        pruned=pruner.stop_message is not None,
                    )
                    _record(ledger, run)
                runs.append(run)
                rung_runs.append(run)
                spent = spent + run.cost
                if i == 0:
                    losses = [h.get("eval_loss") for h in run.details.get("eval_history", [])]
                    tuner.queue_probe(run.hyperparameters, losses, ok=run.status == "ok")
                verdicts[run_id] = judge(run, criteria)
                if verdicts[run_id].passed:
                    recommendation = run_id
                    break
                if config.ladder.distil_on_ceiling and only_ceilings_failed(verdicts[run_id]):
                    too_big = run  # a larger rung would be slower and bigger still: distil this one
                    break
                over = would_exceed_budget(criteria, spent, Cost())
                if over:
                    break
            ok = [r for r in rung_runs if r.status == "ok"]
            if ok:
                best = max(ok, key=lambda r: r.metrics.get(metric, 0.0))
                if rung_forecast is not None:
                    curves.append((rung_forecast.small_score, best.metrics[metric]))
                warm = {k: best.hyperparameters[k] for k in ("learning_rate", "epochs", "warmup_ratio")}
                if previous_best is not None:
                    reference = previous_best
                previous_best = best
            if recommendation:
                stop_reason = f"{rung.name} meets every criterion: larger rungs were not trained"
                break
            if too_big is not None:
                break
            if found_elsewhere is not None:
                stop_reason = (
                    f"another worker sharing the study reached {metric} {found_elsewhere:.3f} on {rung.name}: "
                    f"{tuner.best_elsewhere()}; its run directory holds that model"
                )
                break
            over = would_exceed_budget(criteria, spent, Cost())
            if over:
                stop_reason = over
                break
        if too_big is not None and recommendation is None:
            sid = f"{too_big.run_id}-student"
            student = ledger.finished(sid)
            if student is None:
                student = _record(ledger, distil_run(too_big, data, config, run_dir, sid, progress=say))
            else:
                say(f"{sid}: read back from the ledger (not distilled again)")
            runs.append(student)
            spent = spent + student.cost
            verdicts[sid] = judge(student, criteria)
            failed = ", ".join(verdicts[too_big.run_id].failed)
            if verdicts[sid].passed:
                recommendation = sid
                stop_reason = f"{too_big.candidate.name} met the floor but not {failed}; its distilled student meets every criterion"
            else:
                stop_reason = f"{too_big.candidate.name} met the floor but not {failed}, nor did its distilled student"
        if recommendation is None:
            stop_reason += f"; closest: {closest_failure(verdicts)}"
    return _finish(config, data, run_dir, ledger, baseline, runs, verdicts, recommendation, stop_reason, say)


def _small_experiment(
    config: Config,
    rung: Any,
    source: str,
    data: TaskData,
    run_dir: Path,
    ledger: Ledger,
    curves: list[tuple[float, float]],
    say: Progress,
) -> tuple[RunResult, Forecast | None]:
    """Train the rung on a fraction of the data with the default trial, and forecast its full-data metric."""
    run_id = f"{rung.name}-small"
    metric = config.criteria.metric
    run = ledger.finished(run_id)
    if run is None:
        say(f"{rung.name}: small experiment on {config.tuning.small_fraction:.0%} of the training data")
        run = train_run(
            candidate_for(rung),
            source,
            data,
            config,
            run_dir,
            run_id,
            {"batch_size": config.train.batch_size},
            train_fraction=config.tuning.small_fraction,
            save_model=False,
            progress=say,
        )
        _record(ledger, run)
    else:
        say(f"{run_id}: read back from the ledger (not retrained)")
    if run.status != "ok" or metric not in run.metrics:
        return run, None
    forecast = forecast_full(run.metrics[metric], config.tuning.small_fraction, len(data.validation), curves)
    say(
        f"{rung.name}: forecast full-data {metric} {forecast.mean:.3f} ± {forecast.sigma:.3f} "
        f"({forecast.method}, from {forecast.small_score:.3f} on {forecast.fraction:.0%})"
    )
    return run, forecast


def _finish(
    config: Config,
    data: TaskData,
    run_dir: Path,
    ledger: Ledger,
    baseline: RunResult,
    runs: list[RunResult],
    verdicts: dict[str, Verdict],
    recommendation: str | None,
    stop_reason: str,
    say: Progress,
    details: dict[str, Any] | None = None,
) -> Report:
    main = distributed.is_main()  # the other ranks of a multi-process job only trained in lockstep
    if recommendation and recommendation != "baseline" and main:
        runs = [_evaluate_on_test(r, run_dir, data, config, ledger) if r.run_id == recommendation else r for r in runs]
    total = sum((r.cost for r in runs), baseline.cost)
    rec = next((r for r in [baseline, *runs] if r.run_id == recommendation), None)
    if rec is not None and "test_cost" in rec.details:
        total = total + Cost.from_dict(rec.details["test_cost"])
    extra = dict(details or {})
    extra["low_carbon_alternatives"] = [list(x) for x in low_carbon_alternatives(total.energy_kwh)]
    extra["dataset_summary"] = data.summary()
    report = Report(
        task=config.task,
        dataset={"source": data.source, "label_names": list(data.label_names), **data.summary()},
        criteria=config.criteria,
        baseline=baseline,
        runs=tuple(runs),
        verdicts=verdicts,
        recommendation=recommendation,
        stop_reason=stop_reason,
        total_cost=total,
        config=config.to_dict(),
        details=extra,
    )
    if not main:
        return report
    freed = _publish(report, run_dir, data, config.output.keep_checkpoints, ledger)
    report = dataclasses.replace(report, details={**report.details, "disk_freed_mb": freed})
    write_reports(report, run_dir)
    say(f"reports written to {run_dir}")
    return report


def _previous_recommendation(from_dir: Path, data: TaskData) -> dict[str, Any]:
    """Read and check the earlier run's recommendation before anything is written.

    Returns the earlier report.json; raises RunDirError or DataError when it cannot be continued.
    """
    prev_report_path = from_dir / "report.json"
    if not prev_report_path.is_file():
        raise RunDirError(f"{from_dir} has no report.json. Pass the run directory of a finished advise with --from.")
    try:
        prev = json.loads(prev_report_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise RunDirError(
            f"{prev_report_path} is not valid JSON. Pass the run directory of a finished advise with --from."
        ) from None
    rec = prev.get("recommendation")
    if not rec:
        raise RunDirError(f"{from_dir} has no recommended model to continue from. Run advise without --from.")
    old_labels = list(prev.get("dataset", {}).get("label_names", []))
    new = sorted(set(data.label_names) - set(old_labels))
    if new:
        raise DataError(
            f"The expanded data has labels the earlier model does not know: {', '.join(new)}. "
            "Drop those rows, or run advise without --from to train a new head."
        )
    if list(data.label_names) != old_labels:
        raise DataError(
            f"The expanded data has labels {list(data.label_names)} but the earlier model has {old_labels}; "
            "keep every earlier label in the data."
        )
    cand_info = rec["candidate"]
    if not is_safe_name(str(cand_info.get("name", ""))):  # it names this run's folder
        raise RunDirError(
            f"{prev_report_path} names the model {cand_info.get('name')!r}, not a valid rung name. "
            "Pass the run directory of a finished advise with --from."
        )
    if cand_info["kind"] == "baseline":
        raise RunDirError(
            f"The recommendation in {from_dir} is the TF-IDF baseline; incremental training needs a transformer. "
            "Run advise without --from."
        )
    source = from_dir / "model"
    if not (source / "config.json").is_file():
        raise RunDirError(f"{source} does not hold the recommended model (was it deleted?). Run advise without --from.")
    return prev


def _incremental(
    config: Config, from_dir: Path, data: TaskData, run_dir: Path, ledger: Ledger, say: Progress
) -> Report:
    """Continue the earlier run's recommended model on the (expanded) data instead of climbing again."""
    prev = _previous_recommendation(from_dir, data)
    rec = prev["recommendation"]
    cand_info = rec["candidate"]
    source = from_dir / "model"
    criteria = config.criteria
    baseline = ledger.get("baseline") or _record(ledger, fit_baseline(data, config, run_dir, progress=say))
    verdicts = {"baseline": judge(baseline, criteria)}
    run_id = f"{cand_info['name']}-incremental"
    run = ledger.finished(run_id)
    if run is None:
        candidate = Candidate(name=cand_info["name"], kind="incremental", source=str(source), parent_run=str(from_dir))
        run = _record(ledger, train_run(candidate, str(source), data, config, run_dir, run_id, progress=say))
    verdicts[run_id] = judge(run, criteria)
    # what the recommended rung cost when it was trained from the pre-trained checkpoint
    scratch: dict[str, Any] = next(
        (r.get("cost", {}) for r in prev.get("runs", []) if r.get("run_id") == rec.get("run_id")), {}
    )
    details = {
        "incremental": {
            "from": str(from_dir),
            "from_run": rec.get("run_id"),
            "from_scratch_cost": scratch,
            "incremental_cost": run.cost.to_dict(),
        }
    }
    recommendation = run_id if verdicts[run_id].passed else ("baseline" if verdicts["baseline"].passed else None)
    stop_reason = f"incremental training of {cand_info['name']} from {from_dir}: " + (
        "meets every criterion" if verdicts[run_id].passed else f"fails ({'; '.join(verdicts[run_id].failed)})"
    )
    return _finish(config, data, run_dir, ledger, baseline, [run], verdicts, recommendation, stop_reason, say, details)
