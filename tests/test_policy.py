"""The climb's decisions, tested on records made by hand: nothing is trained here."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from advisor import runkey
from advisor.climb.policy import (
    Distil,
    Evidence,
    FitBaseline,
    RungInfo,
    SharedStudy,
    Skip,
    Stop,
    Train,
    candidates_planned,
    decide,
    verdicts,
)
from advisor.config.settings import build_config
from advisor.runkey import RunKey
from advisor.types import Candidate, Cost, RunResult
from advisor.verdicts.gains import run_gains
from tests.conftest import key_for

N = 600
LABELS = tuple(i % 2 for i in range(N))
RUNGS = (RungInfo("small", 10_000_000), RungInfo("medium", 20_000_000), RungInfo("large", 80_000_000))


def predictions(accuracy: float, seed: int = 0) -> tuple[int, ...]:
    """Predictions on LABELS that are right on exactly round(accuracy * N) rows, spread by ``seed``."""
    import random

    wrong = set(random.Random(seed).sample(range(N), N - round(accuracy * N)))
    return tuple(1 - y if i in wrong else y for i, y in enumerate(LABELS))


def run(
    run_id: str, accuracy: float | None, status: str = "ok", kind: str = "finetune", cost: Cost | None = None, **kw
) -> RunResult:
    key = key_for(run_id)
    name = key.step or "baseline"
    preds = predictions(accuracy, seed=len(run_id)) if accuracy is not None and status != "failed" else ()
    hp = kw.pop("hyperparameters", {"learning_rate": 1e-4, "epochs": 3.0, "warmup_ratio": 0.1})
    return RunResult(
        key=key,
        candidate=Candidate(name, "baseline" if run_id == "baseline" else kind, "x", params_total=kw.pop("params", 1)),
        hyperparameters=hp,
        status=status,  # type: ignore[arg-type]
        metrics={"accuracy": accuracy} if accuracy is not None and status != "failed" else {},
        cost=cost or Cost(train_flops=1e14, wall_s=10, provenance={"flops": "analytic"}),
        message=None if status == "ok" else f"{status} for a reason",
        val_predictions=preds,
        **kw,
    )


def config(tmp_path: Path, *sets: str):  # type: ignore[no-untyped-def]
    return build_config(
        overrides=["criteria.floor=0.75", "tuning.trials_per_rung=2", *sets], extra={"output": {"out": str(tmp_path)}}
    )


def ev(*runs: RunResult, **kw) -> Evidence:  # type: ignore[no-untyped-def]
    return Evidence(RUNGS, tuple(runs), LABELS, 2, **kw)


def test_the_climb_starts_with_the_baseline_and_then_the_smallest_rung(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert decide(ev(), cfg) == FitBaseline()
    assert decide(ev(run("baseline", 0.60)), cfg) == Train("small", runkey.trial("small", 1))


def test_a_pass_needs_the_lower_bound_above_the_floor_not_the_point_estimate(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    # 0.77 on 600 rows: interval about [0.73, 0.80] straddles 0.75 -> undecided, the climb goes on
    near = decide(ev(run("baseline", 0.60), run("small-t1", 0.77)), cfg)
    assert near == Train("small", runkey.trial("small", 2))
    judged = verdicts(ev(run("baseline", 0.60), run("small-t1", 0.77)), cfg)
    assert judged["small-t1"].state == "undecided"
    assert judged["small-t1"].rows_needed and judged["small-t1"].rows_needed > N
    # 0.85 on 600 rows: the lower bound clears 0.75 -> the climb stops at the smallest rung
    stop = decide(ev(run("baseline", 0.60), run("small-t1", 0.85)), cfg)
    assert isinstance(stop, Stop) and stop.recommendation == "small-t1" and stop.outcome == "met"


def test_the_baseline_that_clearly_passes_ends_the_climb(tmp_path: Path) -> None:
    stop = decide(ev(run("baseline", 0.90)), config(tmp_path))
    assert isinstance(stop, Stop) and stop.recommendation == "baseline"


def test_a_clear_fail_moves_to_the_next_rung_after_its_trials(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    runs = [run("baseline", 0.60), run("small-t1", 0.62), run("small-t2", 0.65)]
    assert decide(ev(*runs), cfg) == Train("medium", runkey.trial("medium", 1))


def test_no_pass_with_undecided_runs_says_how_many_rows_would_decide(tmp_path: Path) -> None:
    cfg = config(tmp_path, "tuning.trials_per_rung=1")
    runs = [run("baseline", 0.60), run("small-t1", 0.62), run("medium-t1", 0.76), run("large-t1", 0.70)]
    stop = decide(ev(*runs), cfg)
    assert isinstance(stop, Stop) and stop.recommendation is None and stop.outcome == "not_met"
    assert "closest was medium-t1" in stop.reason and "validation rows would decide it" in stop.reason


def test_the_bonferroni_family_is_fixed_before_the_climb(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    # baseline + 3 rungs x 2 trials + one distilled student
    assert candidates_planned(ev(), cfg) == 8
    judged = verdicts(ev(run("baseline", 0.60)), cfg)
    assert judged["baseline"].interval is not None
    assert judged["baseline"].interval["level"] == pytest.approx(1 - 0.05 / 8)


def test_a_run_meeting_the_floor_but_too_big_is_distilled_then_judged(tmp_path: Path) -> None:
    cfg = config(tmp_path, "criteria.max_params=5")
    runs = [run("baseline", 0.60, params=1), run("small-t1", 0.90, params=10)]
    assert decide(ev(*runs), cfg) == Distil("small-t1", runkey.student("small-t1"))
    student = run("small-t1-student", 0.88, kind="distilled", params=3)
    stop = decide(ev(*runs, student), cfg)
    assert isinstance(stop, Stop) and stop.recommendation == "small-t1-student"


def test_a_budget_stopped_run_ends_the_climb_and_its_partial_model_is_judged(tmp_path: Path) -> None:
    cfg = config(tmp_path, "criteria.budget_pflops=1")
    partial = run("small-t1", 0.70, status="budget")
    stop = decide(ev(run("baseline", 0.60), partial), cfg)
    assert isinstance(stop, Stop) and stop.outcome == "budget" and stop.recommendation is None
    passing = run("small-t1", 0.90, status="budget")
    stop = decide(ev(run("baseline", 0.60), passing), cfg)
    assert isinstance(stop, Stop) and stop.recommendation == "small-t1"


def test_a_rung_whose_forecast_does_not_fit_the_budget_is_not_started(tmp_path: Path) -> None:
    cfg = config(tmp_path, "criteria.budget_pflops=1", "tuning.trials_per_rung=1")
    spent = Cost(train_flops=0.6e15)
    runs = [run("baseline", 0.60), run("small-t1", 0.65)]
    big = Cost(train_flops=0.5e15)
    stop = decide(ev(*runs, forecasts={"medium": big}, spent=spent), cfg)
    assert isinstance(stop, Stop) and stop.outcome == "budget"
    assert "stopped before medium" in stop.reason and "0.4 PFLOPs left" in stop.reason
    assert stop.next_cost == big
    fits = decide(ev(*runs, forecasts={"medium": Cost(train_flops=0.3e15)}, spent=spent), cfg)
    assert fits == Train("medium", runkey.trial("medium", 1))


def test_the_first_rung_starts_even_if_its_forecast_exceeds_the_budget(tmp_path: Path) -> None:
    # a partial model, stopped inside the run, is the best use of a budget smaller than one training
    cfg = config(tmp_path, "criteria.budget_pflops=0.1")
    action = decide(ev(run("baseline", 0.60), forecasts={"small": Cost(train_flops=1e15)}), cfg)
    assert action == Train("small", runkey.trial("small", 1))


def test_a_spent_budget_stops_before_the_next_trial(tmp_path: Path) -> None:
    cfg = config(tmp_path, "criteria.budget_seconds=15")
    stop = decide(ev(run("baseline", 0.60), run("small-t1", 0.65), spent=Cost(wall_s=16)), cfg)
    assert isinstance(stop, Stop) and stop.outcome == "budget" and "wall time budget" in stop.reason


def test_a_worker_never_climbs_past_a_rung_another_worker_passed(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    runs = [run("baseline", 0.60), run("small-t1", 0.62), run("small-t2", 0.64)]
    # this worker's trials are done, but another worker sharing the study reached the floor
    stop = decide(ev(*runs, shared={"small": SharedStudy(started=4, best=0.90)}), cfg)
    assert isinstance(stop, Stop) and "another worker" in stop.reason
    # also when the rung's trial budget was used by the others before this worker trained at all
    stop = decide(ev(run("baseline", 0.6), shared={"small": SharedStudy(started=2, best=0.9)}), cfg)
    assert isinstance(stop, Stop) and "another worker" in stop.reason
    used_up = decide(ev(run("baseline", 0.6), shared={"small": SharedStudy(started=2, best=0.6)}), cfg)
    assert used_up == Train("medium", runkey.trial("medium", 1))


def test_small_experiments_come_first_and_a_hopeless_rung_is_skipped(tmp_path: Path) -> None:
    cfg = config(tmp_path, "tuning.small_fraction=0.25", "criteria.floor=0.95")
    assert decide(ev(run("baseline", 0.60)), cfg) == Train("small", runkey.small("small"))
    action = decide(ev(run("baseline", 0.60), run("small-small", 0.40)), cfg)
    assert isinstance(action, Skip) and action.rung == "small"
    skipped = RunResult(
        runkey.skipped("small"), Candidate("small", "finetune", "x"), {}, "skipped", {}, Cost(), message="x"
    )
    after = decide(ev(run("baseline", 0.60), run("small-small", 0.40), skipped), cfg)
    assert after == Train("medium", runkey.small("medium"))


def test_min_gain_per_pflop_stops_a_climb_that_no_longer_pays(tmp_path: Path) -> None:
    cfg = config(tmp_path, "criteria.min_gain_per_pflop=100", "tuning.trials_per_rung=1")
    # +2 points over the baseline for 0.1 PFLOP = 20 points per PFLOP < 100
    stop = decide(ev(run("baseline", 0.60), run("small-t1", 0.62)), cfg)
    assert isinstance(stop, Stop) and "points per PFLOP" in stop.reason


def test_the_same_records_give_the_same_decision(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    runs = (run("baseline", 0.60), run("small-t1", 0.77))
    assert decide(ev(*runs), cfg) == decide(ev(*runs), cfg)


def test_gains_are_paired_and_say_when_they_are_not_distinguishable(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    base = run("baseline", 0.60)
    same = dataclasses.replace(run("small-t1", 0.60), val_predictions=base.val_predictions)
    better = run("medium-t1", 0.80)
    gains = run_gains(base, [same, better], LABELS, 2, cfg.criteria)
    assert gains["small-t1"]["vs_baseline"]["points"] == 0.0
    assert not gains["small-t1"]["vs_baseline"]["distinguishable"]
    assert gains["medium-t1"]["vs_previous"]["reference"] == "small-t1"
    assert gains["medium-t1"]["vs_previous"]["distinguishable"]
    assert gains["medium-t1"]["per_pflop"]["value"] == pytest.approx(200.0)  # 20 points / 0.1 PFLOP


# ----------------------------------------------------------------------------- the executor's choices


def test_a_finished_record_is_read_back_a_failed_one_redone_and_a_skip_never_redone() -> None:
    from advisor.climb.policy import read_back

    action = Train("small", runkey.trial("small", 1))
    done, failed = run("small-t1", 0.8), run("small-t1", None, status="failed")
    assert read_back(done, action) is done
    assert read_back(failed, action) is None and read_back(None, action) is None
    skip = Skip("small", runkey.skipped("small"), "forecast misses")
    recorded_skip = RunResult(
        runkey.skipped("small"), Candidate("small", "finetune", "x"), {}, "skipped", {}, Cost(), message="x"
    )
    assert read_back(recorded_skip, skip) is recorded_skip


def test_a_rung_starts_from_the_best_trial_of_the_last_rung_climbed_below_it() -> None:
    from advisor.climb.policy import warm_start

    hp_best = {"learning_rate": 3e-4, "epochs": 4.0, "warmup_ratio": 0.1}
    runs = [
        run("baseline", 0.6),
        run("small-t1", 0.70),
        run("small-t2", 0.74, hyperparameters=hp_best),
        run("small-small", 0.90),  # a small experiment is not a trial: never a warm start
        run("medium-t1", 0.72),
    ]
    assert warm_start(runs[:4], "medium", "accuracy").hyperparameters == hp_best
    assert warm_start(runs, "large", "accuracy").run_id == "medium-t1"  # the last rung climbed, not the best
    assert warm_start(runs[:1], "small", "accuracy") is None  # no trial below: the tuner's default


def test_the_next_step_is_forecast_once_a_transformers_speed_is_known() -> None:
    from advisor.climb.policy import step_to_forecast

    base, small_trial = run("baseline", 0.6), run("small-t1", 0.7)
    assert step_to_forecast(RUNGS, [base], {}, speed_known=False) is None  # nothing measured to forecast with
    assert step_to_forecast(RUNGS, [base], {}, speed_known=True).name == "small"  # a --from continuation ran
    assert step_to_forecast(RUNGS, [base, small_trial], {}, speed_known=False).name == "medium"
    assert step_to_forecast(RUNGS, [base, small_trial], {"medium": Cost()}, speed_known=False) is None


def test_the_steps_are_ordered_once_before_the_first_step_past_the_baseline(tmp_path: Path) -> None:
    from advisor.climb.evidence import OrderSteps

    cfg = config(tmp_path)
    assert decide(ev(ordered=False), cfg) == FitBaseline()  # the baseline needs no order
    assert decide(ev(run("baseline", 0.60), ordered=False), cfg) == OrderSteps()
    assert isinstance(decide(ev(run("baseline", 0.95), ordered=False), cfg), Stop)  # nothing past it to order
    assert decide(ev(run("baseline", 0.60)), cfg) == Train("small", runkey.trial("small", 1))


def test_the_next_step_is_forecast_only_when_a_budget_will_be_checked_against_it(tmp_path: Path) -> None:
    from advisor.climb.evidence import Forecast

    runs = (run("baseline", 0.60), run("small-t1", 0.65), run("small-t2", 0.66))
    budgeted = config(tmp_path, "criteria.budget_pflops=1")
    assert decide(ev(*runs), budgeted) == Forecast(RUNGS[1])
    over = decide(ev(*runs, forecasts={"medium": Cost(train_flops=2e15)}), budgeted)
    assert isinstance(over, Stop) and over.outcome == "budget", "the forecast is decided on once it is in"
    assert decide(ev(*runs), config(tmp_path)) == Train("medium", runkey.trial("medium", 1)), "no budget, no forecast"
    passed = decide(ev(runs[0], run("small-t1", 0.95)), budgeted)
    assert isinstance(passed, Stop) and passed.recommendation == "small-t1", "a stop needs no forecast"


def test_a_trial_carries_the_settings_its_rung_starts_from(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    best = {"learning_rate": 3e-4, "epochs": 4.0, "warmup_ratio": 0.1}
    runs = (run("baseline", 0.6), run("small-t1", 0.70), run("small-t2", 0.72, hyperparameters=best))
    action = decide(ev(*runs), cfg)
    assert action == Train("medium", runkey.trial("medium", 1)) and action.warm_start == best
    earlier = {"learning_rate": 5e-5, "epochs": 2.0, "warmup_ratio": 0.0}  # a --from run's winning settings
    assert decide(ev(runs[0], warm_start=earlier), cfg).warm_start == earlier
    assert decide(ev(runs[0]), cfg).warm_start is None  # the tuner's own default
    assert decide(ev(*runs, warm_start=earlier), cfg).warm_start == best, "a rung climbed here comes first"


def test_a_recorded_step_is_read_back_and_a_failed_one_redone_by_the_policys_word(tmp_path: Path) -> None:
    from advisor.climb.evidence import ReadBack, Redo

    cfg = config(tmp_path)
    base, done, failed = run("baseline", 0.6), run("small-t1", 0.70), run("small-t1", None, status="failed")
    assert decide(ev(recorded={"baseline": base}), cfg) == ReadBack(FitBaseline(), base)
    trial = Train("small", runkey.trial("small", 1))
    assert decide(ev(base, recorded={"small-t1": done}), cfg) == ReadBack(trial, done)
    assert decide(ev(base, recorded={"small-t1": failed}), cfg) == Redo(trial, failed)


def test_a_shared_study_is_read_before_each_trial_and_waited_on_once_when_used_up(tmp_path: Path) -> None:
    from advisor.climb.evidence import ReadShared, WaitForShared

    cfg = config(tmp_path, f"tuning.storage=journal:{tmp_path / 'study.journal'}")
    base = run("baseline", 0.6)
    first, medium = Train("small", runkey.trial("small", 1)), Train("medium", runkey.trial("medium", 1))
    assert decide(ev(base), cfg) == ReadShared(first)
    assert decide(ev(base, shared={"small": SharedStudy(1, None, as_of=1)}), cfg) == first
    stale = SharedStudy(1, None, as_of=0)  # read before this worker's last run
    assert decide(ev(base, shared={"small": stale}), cfg) == ReadShared(first)
    used_up = SharedStudy(2, 0.70, as_of=1)  # every trial started, none at the floor yet
    assert decide(ev(base, shared={"small": used_up}), cfg) == WaitForShared("small")
    waited = dataclasses.replace(used_up, waited=True)
    assert decide(ev(base, shared={"small": waited}), cfg) == ReadShared(medium)
    passed = decide(ev(base, shared={"small": SharedStudy(2, 0.90, as_of=1)}), cfg)
    assert isinstance(passed, Stop) and "another worker" in passed.reason, "nothing to wait for"
    assert decide(ev(base, recorded={"small-t1": run("small-t1", 0.7)}), cfg) != ReadShared(first)


# ----------------------------------------------------------------------------- the --from continuation


def _continuation(tmp_path: Path, *trials: RunResult, recorded: tuple[str, ...] = (), **kw):  # type: ignore[no-untyped-def]
    from advisor.climb.continuing import ContinuationEvidence

    cfg = config(tmp_path, *kw.pop("sets", ()))
    judged = verdicts(ev(run("baseline", 0.60), *trials), cfg)
    spent = kw.pop("spent", Cost())
    first = kw.pop("first_forecast", Cost(train_flops=1e14))
    evidence = ContinuationEvidence("tiny", "/runs/earlier", tuple(trials), judged, frozenset(recorded), spent, first)
    return evidence, cfg, judged


def test_the_continuation_trains_its_trials_until_one_passes(tmp_path: Path) -> None:
    from advisor.climb.policy import Continue

    evidence, cfg, _ = _continuation(tmp_path)
    assert decide(evidence, cfg) == Continue(RunKey("continuation", "tiny", 1))
    evidence, cfg, _ = _continuation(tmp_path, run("tiny-c1", 0.70))
    assert decide(evidence, cfg) == Continue(RunKey("continuation", "tiny", 2))
    evidence, cfg, _ = _continuation(tmp_path, run("tiny-c1", 0.70), run("tiny-c2", 0.90))
    stop = decide(evidence, cfg)
    assert stop == Stop("tiny continued from /runs/earlier meets every criterion", "tiny-c2", "met")


def test_the_continuation_stops_when_its_trials_are_used_or_the_budget_cannot_fit_the_next(tmp_path: Path) -> None:
    from advisor.climb.policy import Continue

    used = _continuation(tmp_path, run("tiny-c1", 0.70), run("tiny-c2", 0.71))
    assert decide(*used[:2]) == Stop("", None, "not_met")  # trials_per_rung=2
    stopped_inside = _continuation(tmp_path, run("tiny-c1", 0.70), run("tiny-c2", 0.71, status="budget"))
    assert decide(*stopped_inside[:2]).outcome == "budget"
    # 1 PFLOP allowed, 0.95 spent: the next trial, forecast at the last one's 0.1, does not fit
    sets = ("criteria.budget_pflops=1",)
    tight, cfg, _ = _continuation(tmp_path, run("tiny-c1", 0.70), spent=Cost(train_flops=0.95e15), sets=sets)
    refused = decide(tight, cfg)
    assert (
        isinstance(refused, Stop)
        and refused.outcome == "budget"
        and refused.reason.startswith("stopped before tiny-c2")
    )
    # ... unless the ledger already holds it: a recorded trial is read back, not paid for again
    held, cfg, _ = _continuation(
        tmp_path, run("tiny-c1", 0.70), spent=Cost(train_flops=0.95e15), recorded=("tiny-c2",), sets=sets
    )
    assert decide(held, cfg) == Continue(RunKey("continuation", "tiny", 2))


def test_a_failed_continuation_falls_back_on_the_scratch_run_or_the_baseline_and_says_why(tmp_path: Path) -> None:
    from advisor.climb.continuing import best_trial, continuation_recommendation

    trials = (run("tiny-c1", 0.60), run("tiny-c2", 0.65))
    _, _, judged = _continuation(tmp_path, *trials)
    ended = Stop("", None, "not_met")
    best = best_trial(trials, "accuracy")
    assert best is not None and best.run_id == "tiny-c2"
    pick, why = continuation_recommendation("tiny", "/runs/earlier", ended, best, None, judged)
    assert pick is None and why == "tiny continued from /runs/earlier fails (floor)"
    scratch = run("tiny-scratch", 0.90)
    _, _, with_scratch = _continuation(tmp_path, *trials, scratch)
    assert continuation_recommendation("tiny", "/runs/earlier", ended, best, scratch, with_scratch)[0] == "tiny-scratch"
    passed = Stop("tiny continued from /runs/earlier meets every criterion", "tiny-c2", "met")
    assert continuation_recommendation("tiny", "/runs/earlier", passed, best, None, judged) == (
        "tiny-c2",
        passed.reason,
    )


# ----------------------------------------------------------------------------- resuming the climb after --from


def test_the_climb_resumes_above_the_earlier_rung_unless_something_says_not_to() -> None:
    from advisor.climb.policy import ResumeClimb, ResumptionEvidence

    rungs = ("tiny", "small", "large")
    plan = ResumptionEvidence("tiny", False, "offline", rungs)
    assert decide(plan) == ResumeClimb(("small", "large")), "planned before the continuation runs"
    failed = dataclasses.replace(plan, ended=Stop("", None, "not_met"))
    assert decide(failed) == ResumeClimb(("small", "large"))
    assert decide(dataclasses.replace(failed, earlier="baseline", from_baseline=True)) == ResumeClimb(rungs)
    passed = Stop("tiny continued from /runs/earlier meets every criterion", "tiny-c1", "met")
    assert decide(dataclasses.replace(plan, ended=passed)) == passed
    budget = decide(dataclasses.replace(plan, ended=Stop("stopped before tiny-c2", None, "budget")))
    assert isinstance(budget, Stop) and budget.outcome == "budget" and "budget does not allow" in budget.reason
    off = decide(dataclasses.replace(failed, resume=False))
    assert isinstance(off, Stop) and off.outcome == "not_met" and "--no-resume-climb" in off.reason
    top = decide(dataclasses.replace(failed, earlier="large"))
    assert isinstance(top, Stop) and "top rung" in top.reason
    stranger = decide(dataclasses.replace(failed, earlier="huge"))
    assert isinstance(stranger, Stop) and "not a rung of the ladder offline" in stranger.reason
    unread = decide(dataclasses.replace(failed, climbable=None, unreadable="no such ladder"))
    assert isinstance(unread, Stop) and "cannot be read (no such ladder)" in unread.reason


# ----------------------------------------------------------------------------- the compaction step


def _student(role: str, seed: int, accuracy: float, status: str = "ok", metric: str = "accuracy") -> RunResult:
    r = run(RunKey(role, number=seed).run_id, accuracy, status=status)  # type: ignore[arg-type]
    return dataclasses.replace(r, metrics={metric: accuracy}) if status == "ok" else r


def test_each_seed_trains_its_control_first_then_the_distilled_student() -> None:
    from advisor.climb.policy import CompactionEvidence, TrainStudent

    e = CompactionEvidence(seeds=(0, 1), control=True, decide_first=False, runs=())
    assert decide(e) == TrainStudent(RunKey("control", number=0))
    c0 = _student("control", 0, 0.80)
    e = dataclasses.replace(e, runs=(c0,), teacher_check="teacher_better")
    assert decide(e) == TrainStudent(RunKey("distilled", number=0))
    e = dataclasses.replace(e, runs=(c0, _student("distilled", 0, 0.84)))
    assert decide(e) == TrainStudent(RunKey("control", number=1))
    e = dataclasses.replace(e, runs=(*e.runs, _student("control", 1, 0.79), _student("distilled", 1, 0.83)))
    assert decide(e) == Stop("every seed was trained", None, "done")
    # without controls, only the distilled students
    alone = CompactionEvidence(seeds=(3,), control=False, decide_first=True, runs=())
    assert decide(alone) == TrainStudent(RunKey("distilled", number=3))


def test_a_teacher_that_does_not_clear_its_bar_sends_the_step_down_the_cheaper_path() -> None:
    from advisor.climb.compaction import needs_teacher_check
    from advisor.climb.policy import CompactionEvidence, TrainStudent

    c0 = _student("control", 0, 0.80)
    before = CompactionEvidence(seeds=(0, 1), control=True, decide_first=True, runs=(c0,))
    assert needs_teacher_check(before) and not needs_teacher_check(CompactionEvidence((0,), True, True, ()))
    level = dataclasses.replace(before, teacher_check="no_evidence")
    assert not needs_teacher_check(level)
    assert decide(level) == TrainStudent(RunKey("control", number=1)), "no distilled student is paid for"
    done = dataclasses.replace(level, runs=(c0, _student("control", 1, 0.81)))
    assert decide(done) == Stop("the teacher did not clear its bar: the control is kept", None, "done")
    # a transfer set lowers the bar: a teacher level with its control still adds signal, one behind does not
    assert decide(dataclasses.replace(level, transfer_rows=500)) == TrainStudent(RunKey("distilled", number=0))
    behind = dataclasses.replace(level, teacher_check="control_better", transfer_rows=500)
    assert decide(behind) == TrainStudent(RunKey("control", number=1))
    # without decide_first the students are trained whatever the check says
    assert decide(dataclasses.replace(behind, decide_first=False)) == TrainStudent(RunKey("distilled", number=0))


def test_a_run_the_budget_stopped_ends_the_compaction_step() -> None:
    from advisor.climb.policy import CompactionEvidence

    stopped = _student("distilled", 0, 0.5, status="budget")
    e = CompactionEvidence(seeds=(0, 1), control=True, decide_first=False, runs=(_student("control", 0, 0.8), stopped))
    action = decide(e)
    assert isinstance(action, Stop) and action.outcome == "budget" and "distilled-seed0" in action.reason


def test_the_student_kept_is_the_best_distilled_one_by_the_steps_metric_else_the_best_control() -> None:
    from advisor.climb.compaction import student_to_keep

    a, b = _student("distilled", 0, 0.70, metric="macro_f1"), _student("distilled", 1, 0.75, metric="macro_f1")
    a = dataclasses.replace(a, metrics={"macro_f1": 0.70, "accuracy": 0.90})
    b = dataclasses.replace(b, metrics={"macro_f1": 0.75, "accuracy": 0.80})
    controls = [_student("control", 0, 0.95)]
    assert student_to_keep([a, b], controls, "macro_f1") is b, "judged by the step's metric, not accuracy"
    assert student_to_keep([a, b], controls, "accuracy") is a
    assert student_to_keep([], controls, "accuracy") is controls[0], "the cheaper path keeps the control"
    with pytest.raises(ValueError, match="nothing to keep"):
        student_to_keep([], [], "accuracy")


def test_decide_needs_the_config_for_the_climb_and_the_continuation() -> None:
    with pytest.raises(TypeError, match="Evidence needs the config"):
        decide(ev())  # type: ignore[call-overload]


def test_a_worker_waits_on_a_shared_study_only_while_a_running_trial_may_still_pass_the_rung() -> None:
    from advisor.climb.policy import wait_for_shared

    assert not wait_for_shared(1, None, 2, 0.75), "a trial of the rung is still to start here"
    assert wait_for_shared(2, None, 2, 0.75) and wait_for_shared(2, 0.70, 2, 0.75)
    assert not wait_for_shared(2, 0.80, 2, 0.75), "a finished trial already reached the floor"
