"""The climb: baseline first, then the ladder smallest first, until the criteria say stop.

Choices use the validation split only; the test split is touched once, for the final evaluation
of the baseline and of the recommendation. Every finished run goes into the ledger at once, so a
rerun of the same command reads it back instead of training again.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from advisor import distributed
from advisor.climb.budget import spent_against_allowed
from advisor.climb.distiller import Distiller, unavailable
from advisor.climb.executor import Climb
from advisor.climb.policy import budget_exhausted
from advisor.climb.publish import evaluate_on_test, publish, published_artifact
from advisor.config.settings import Config, save_config
from advisor.data.task import TaskData, column, load_task_data
from advisor.errors import RunDirError
from advisor.incremental import executor as incremental
from advisor.incremental import inputs as continuation
from advisor.incremental import resumption
from advisor.metering.devices import process_peak_rss_mb
from advisor.metering.regions import low_carbon_alternatives
from advisor.models.ladder import check_ladder
from advisor.outcome import Report, Verdict
from advisor.report.pages import write_reports
from advisor.store import rundir
from advisor.store.ledger import Ledger, rank_run_dir
from advisor.types import Cost, RunResult
from advisor.verdicts.criteria import PFLOP, closest_verdict, fmt_num, validate_metric_name
from advisor.verdicts.gains import run_gains
from advisor.verdicts.stats import metric_interval, rows_for_margin

Progress = Callable[[str], None]


def prepare_run_dir(path: str | Path, restart: bool = False, say: Progress | None = None) -> Path:
    """Create the run directory and check it is writable, without touching anything inside.

    With ``restart`` the records of an earlier advise in it are first moved to ``<path>.old-<time>``
    (:func:`advisor.store.rundir.move_aside`); ``say`` is told where.
    """
    run_dir = Path(path).expanduser()
    if restart:
        aside = rundir.move_aside(run_dir)
        if aside is not None and say is not None:
            say(f"--restart: the earlier records of {run_dir} were moved to {aside}")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(
            f"Cannot create the run directory {run_dir} ({exc.strerror}). Pass a writable --out."
        ) from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise RunDirError(f"The run directory {run_dir} is not writable. Pass a writable --out.")
    return run_dir


def _with_intervals(run: RunResult, data: TaskData, level: float) -> RunResult:
    """The run with an interval for every metric of every split it was scored on (report.json)."""
    k = len(data.label_names)
    out: dict[str, dict[str, Any]] = {}
    for split, labels, preds, metrics in (
        ("validation", column(data.validation, "label"), run.val_predictions, run.metrics),
        ("test", column(data.test, "label"), run.test_predictions, run.test_metrics),
    ):
        if preds and len(preds) == len(labels):
            out[split] = {m: metric_interval(m, labels, preds, k, level).to_dict() for m in metrics}
    cv = run.cv
    if cv is not None and cv.predictions:
        out["cross_validation"] = {
            m: metric_interval(m, cv.labels, cv.predictions, k, level).to_dict() for m in run.metrics
        }
    return dataclasses.replace(run, intervals=out)


def advise(
    config: Config,
    *,
    from_run: str | Path | None = None,
    progress: Progress | None = None,
    distiller: Distiller | None = None,
    restart: bool = False,
) -> Report:
    """Find the smallest model that meets ``config.criteria``; write reports and the model to the run dir.

    Args:
        config: the resolved configuration (see ``advisor.config.settings.build_config``).
        from_run: an earlier run directory whose recommended model is continued on the (expanded)
            data instead of climbing the ladder again (incremental training).
        progress: receives one line per step of work.
        distiller: turns a run that is good enough but too big into a judged student
            (``distill.compact.distil_run``, which the CLI and ``select_model`` pass); with None
            such a student is recorded as unavailable (:data:`advisor.climb.distiller.NO_DISTILLER`).
        restart: move the run directory's earlier records aside (``<out>.old-<time>``) and start
            afresh; without it, records made on other data, models or settings are refused
            (:mod:`advisor.store.rundir`).

    Returns:
        The Report (also written as report.json, report.md and report.html in the run directory).
    """
    say = progress or (lambda _m: None)
    data, earlier = _check_inputs(config, from_run, say)
    # a multi-process job (accelerate launch): rank 0 owns run_dir, the others work in a scratch copy
    fp = rundir.fingerprint(config, data, from_run)
    run_dir = distributed.from_main(lambda: prepare_run_dir(config.output.out, restart, say))
    with rank_run_dir(run_dir) as run_dir, Ledger(run_dir) as ledger:
        _open_run_dir(config, data, run_dir, ledger, fp, say)
        if config.ladder.distil_on_ceiling and distiller is None:
            distiller = unavailable()  # with a --from too: its climb may resume
        # a resumed climb keeps the ladder's distil_on_ceiling (resumption.plan changes only the rungs)
        start = functools.partial(
            Climb,
            data=data,
            run_dir=run_dir,
            ledger=ledger,
            fingerprint=rundir.study_key(fp),
            say=say,
            distiller=distiller if config.ladder.distil_on_ceiling else None,
        )
        if earlier is not None:
            return _continue(config, earlier, data, run_dir, ledger, say, start)
        return _climb(config, data, run_dir, ledger, say, start(config))


class _Earlier(NamedTuple):
    """What ``--from`` names, read before anything is written."""

    from_dir: Path
    report: Report  # the earlier run's report
    resume: resumption.Plan  # the climb that follows if the continuation fails


def _check_inputs(config: Config, from_run: str | Path | None, say: Progress) -> tuple[TaskData, _Earlier | None]:
    """The task's data, and the earlier run ``--from`` names: bad input fails here, before anything
    is written (a bad ladder or model now, not hours into the climb)."""
    crit = config.criteria
    wanted = rows_for_margin(crit.floor, config.data.validation_margin, crit.confidence)
    data = load_task_data(config.data, progress=say, validation_rows=wanted)
    validate_metric_name(config.criteria.metric, len(data.label_names))
    if from_run is not None:
        prev = continuation.previous_recommendation(Path(from_run), data, config)
        return data, _Earlier(Path(from_run), prev, resumption.plan(config, prev))
    check_ladder(
        config.ladder, allow_pickle=config.train.allow_pickle, trust_remote_code=config.train.trust_remote_code
    )
    return data, None


def _open_run_dir(
    config: Config, data: TaskData, run_dir: Path, ledger: Ledger, fp: dict[str, Any], say: Progress
) -> None:
    """Refuse records made on other data, models or settings; count runs a kill interrupted as lost;
    save the resolved config beside the results."""
    rundir.check(run_dir, ledger.get_meta("fingerprint"), fp)  # nothing stale is read back
    ledger.set_meta("fingerprint", fp)
    for lost in ledger.settle_interrupted():
        at = f" at step {lost.step}" if lost.step is not None else " after it finished, before it was recorded"
        say(f"{lost.run_id}: interrupted last time{at}; {_cost_words(lost.cost)} counted as lost to interruption")
    save_config(config, run_dir / "config.yaml")
    for w in data.warnings:
        say(f"warning: {w}")


def _continue(
    config: Config,
    earlier: _Earlier,
    data: TaskData,
    run_dir: Path,
    ledger: Ledger,
    say: Progress,
    start: resumption.StartClimb,
) -> Report:
    """Continue the earlier recommendation (``--from``); if that fails within budget, resume the climb."""
    c = incremental.continue_from(
        config,
        earlier.from_dir,
        data,
        run_dir,
        ledger,
        say,
        extra_callbacks=_budget_watch(config, ledger),
        later_candidates=earlier.resume.candidates,
    )
    c = resumption.after_continuation(earlier.resume, c, earlier.report, start, say)
    details = {"outcome": c.outcome, **c.details}
    runs = list(c.runs)
    return _finish(
        config, data, run_dir, ledger, c.baseline, runs, c.verdicts, c.recommendation, c.stop_reason, say, details
    )


def _cost_words(cost: Cost) -> str:
    """'12.3 s, 0.0041 PFLOPs' for a progress line."""
    return f"{fmt_num(cost.wall_s)} s, {fmt_num(cost.flops / PFLOP)} PFLOPs"


def _budget_watch(config: Config, ledger: Ledger) -> list[Any]:
    """A budget callback for trainings outside the climb (``--from``): it reads the ledger's spend and rates at each run.

    The judging pass it must leave room for is reserved by ``incremental.continue_from``, which
    knows the model being continued.
    """
    from advisor.climb.budget import BudgetCallback, Rates
    from advisor.climb.spending import any_budget

    if not any_budget(config.criteria):
        return []
    return [
        BudgetCallback(
            config.criteria,
            lambda: sum((r.cost for r in ledger.all()), Cost()),
            0.0,
            lambda: Rates.measured(ledger.all()),  # measured when a run starts: the ledger is empty now
        )
    ]


def _climb(
    config: Config,
    data: TaskData,
    run_dir: Path,
    ledger: Ledger,
    say: Progress,
    climb: Climb,
) -> Report:
    stop = climb.run()
    runs = [r for r in climb.runs if r.run_id != "baseline"]
    baseline = next(r for r in climb.runs if r.run_id == "baseline")
    judged = climb.verdicts()
    return _finish(
        config, data, run_dir, ledger, baseline, runs, judged, stop.recommendation, stop.reason, say, climb.ending(stop)
    )


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
    extra = dict(details or {})
    lost = ledger.lost()  # work a kill interrupted was spent too: in the totals, and listed as such
    lost_cost = sum((x.cost for x in lost), Cost())
    spent = sum((r.cost for r in runs), baseline.cost) + lost_cost
    main = distributed.is_main()  # the other ranks of a multi-process job only trained in lockstep
    if recommendation and recommendation != "baseline" and main:
        over = budget_exhausted(config, spent)
        if over is None:  # scoring the test split draws on the same budget as everything else
            runs = [
                evaluate_on_test(r, run_dir, data, config, ledger) if r.run_id == recommendation else r for r in runs
            ]
        else:
            extra["test_skipped"] = f"the recommendation was not scored on the test split: {over}"
            say(f"warning: {extra['test_skipped']}")
    level = config.criteria.confidence
    baseline = _with_intervals(baseline, data, level)
    runs = [_with_intervals(r, data, level) for r in runs]
    total = sum((r.cost for r in runs), baseline.cost)
    rec = next((r for r in [baseline, *runs] if r.run_id == recommendation), None)
    if rec is not None and "test_cost" in rec.details:
        total = total + Cost.from_dict(rec.details["test_cost"])
    if lost:
        total = total + lost_cost
        extra["lost_to_interruption"] = {"runs": [x.to_dict() for x in lost], "cost": lost_cost.to_dict()}
    extra["budgets"] = spent_against_allowed(config.criteria, total)
    extra["gains"] = run_gains(baseline, runs, column(data.validation, "label"), len(data.label_names), config.criteria)
    greener = low_carbon_alternatives(total.energy_kwh, config.metering)
    extra["low_carbon_alternatives"] = [dataclasses.asdict(x) for x in greener]
    extra["dataset_summary"] = data.summary()
    extra["peak_rss_mb"] = process_peak_rss_mb()
    if recommendation is None:
        closest = closest_verdict({k: v for k, v in verdicts.items() if k != "baseline"})
        if closest is not None and closest.state != "pass":
            extra["closest"] = closest.run_id
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
    freed = publish(report, run_dir, data, config.output.keep_checkpoints, ledger, config.output.keep_closest)
    report = dataclasses.replace(
        report,
        baseline=published_artifact(report.baseline, run_dir, ledger) if report.baseline else None,
        runs=tuple(published_artifact(r, run_dir, ledger) for r in report.runs),
        details={**report.details, "disk_freed_mb": freed},
    )
    write_reports(report, run_dir)
    say(f"reports written to {run_dir}")
    return report
