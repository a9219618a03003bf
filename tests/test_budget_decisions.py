"""Budget decisions on an injected clock and meter: no test here races real time.

The stop decision is checked where it is made: the policy's pure functions (before a rung starts),
:class:`BudgetCallback` inside a run (before each step), :class:`FitBudget` between the baseline's
fits, with fakes for the meter, the clock and the energy reader. Two tests run the real Trainer and
the real baseline on a fake clock that the work itself advances (one second per training step, one
per fit), so where the budget stops them is known to the step. The end-to-end searches on the real
clock are in tests/test_budget.py, marked slow.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from transformers import TrainerCallback

import advisor.training.baseline as baseline_mod
import advisor.training.train as train_mod
from advisor.acceptance import AcceptanceCriteria
from advisor.advise import advise
from advisor.climb.budget import BudgetCallback, FitBudget, Rates
from advisor.climb.policy import budget_exhausted, budget_refuses
from advisor.config.settings import MeteringConfig, build_config
from advisor.data.task import load_task_data
from advisor.metering.cost import Meter
from advisor.runkey import RunKey
from advisor.training.train import train_run
from advisor.types import Candidate, Cost
from tests.conftest import (
    FakeClock,
    FakeEnergyReader,
    OneSecondFit,
    make_tiny_model,
    synthetic_rows,
    tiny_rung,
    write_csv,
    write_ladder,
)

NO_CODECARBON = MeteringConfig(codecarbon=False)


class FakeMeter:
    """What a budget watch reads from :class:`advisor.metering.cost.Meter`: FLOPs and seconds so far."""

    def __init__(self) -> None:
        self.flops, self.seconds = 0.0, 0.0

    def so_far(self) -> tuple[float, float]:
        return self.flops, self.seconds


class LiveEnergyMeter(FakeMeter):
    """A meter whose energy reader says what the open phase has spent so far (codecarbon's running total)."""

    def __init__(self) -> None:
        super().__init__()
        self.kwh = 0.0

    def energy_so_far(self) -> float | None:
        return self.kwh


def _control() -> SimpleNamespace:
    return SimpleNamespace(should_training_stop=False, should_evaluate=False, should_save=False)


# ----------------------------------------------------------------------------- the policy, before a rung


@pytest.mark.parametrize(
    "setting, spent, fits, does_not_fit, label",
    [
        ("budget_pflops=1", Cost(train_flops=0.6e15), Cost(train_flops=0.4e15), Cost(train_flops=0.41e15), "compute"),
        ("budget_seconds=100", Cost(wall_s=60.0), Cost(wall_s=40.0), Cost(wall_s=41.0), "wall time"),
        ("budget_kwh=0.1", Cost(energy_cpu_kwh=0.06), Cost(energy_cpu_kwh=0.04), Cost(energy_ram_kwh=0.041), "energy"),
    ],
    ids=["pflops", "seconds", "kwh"],
)
def test_the_policy_refuses_work_whose_forecast_does_not_fit_what_is_left(
    setting: str, spent: Cost, fits: Cost, does_not_fit: Cost, label: str
) -> None:
    config = build_config(overrides=[f"criteria.{setting}"])
    assert budget_refuses(config, spent, fits) is None  # exactly what is left still fits
    why = budget_refuses(config, spent, does_not_fit)
    assert why is not None and f"left of the {label} budget" in why and "does not fit" in why
    # a forecast that cannot say (no measured rate yet: 0) is not refused; the run's own watch stops it
    assert budget_refuses(config, spent, Cost()) is None
    # a budget not set is never checked
    assert budget_refuses(build_config(overrides=[]), spent, does_not_fit) is None


@pytest.mark.parametrize(
    "setting, below, reached, label",
    [
        ("budget_pflops=1", Cost(train_flops=0.99e15), Cost(train_flops=0.5e15, eval_flops=0.5e15), "compute"),
        ("budget_seconds=15", Cost(wall_s=14.9), Cost(wall_s=15.0), "wall time"),
        ("budget_kwh=0.1", Cost(energy_cpu_kwh=0.099), Cost(energy_cpu_kwh=0.05, energy_ram_kwh=0.06), "energy"),
    ],
    ids=["pflops", "seconds", "kwh"],
)
def test_a_budget_is_exhausted_once_the_search_has_spent_all_of_it(
    setting: str, below: Cost, reached: Cost, label: str
) -> None:
    config = build_config(overrides=[f"criteria.{setting}"])
    assert budget_exhausted(config, below) is None
    why = budget_exhausted(config, reached)
    assert why is not None and why.startswith(f"the {label} budget of") and "is spent" in why


# ----------------------------------------------------------------------------- the callback, inside a run


def test_the_budget_callback_stops_before_the_step_that_would_cross_the_budget() -> None:
    crit = AcceptanceCriteria(budget_pflops=1.0)
    cb = BudgetCallback(crit, Cost(train_flops=0.2e15), eval_flops=0.05e15, rates=Rates())
    meter = FakeMeter()
    cb.bind(meter, None)
    control = _control()
    steps = 0
    while not control.should_training_stop:
        meter.flops += 0.1e15  # each step costs 0.1 PFLOP
        meter.seconds += 1.0
        steps += 1
        cb.on_step_end(None, None, control)
    # it stops at the last step after which the judging pass (0.05) still fits: 0.2 + 0.7 + 0.05 <= 1.0,
    # while one more step would have crossed the budget (0.2 + 0.8 + 0.05 > 1.0)
    assert steps == 7
    assert 0.2 + steps * 0.1 + 0.05 <= 1.0 + 1e-9 < 0.2 + (steps + 1) * 0.1 + 0.05
    assert cb.stop_message is not None and "budget" in cb.stop_message and "PFLOPs" in cb.stop_message
    # the partial model is judged at the stopping step and nothing is saved mid-way
    assert control.should_evaluate and not control.should_save


@pytest.mark.parametrize(
    "crit, spent, rates, unit",
    [
        (AcceptanceCriteria(budget_seconds=10.0), Cost(wall_s=2.0), Rates(), "s left"),
        (AcceptanceCriteria(budget_kwh=0.1), Cost(energy_cpu_kwh=0.02), Rates(kwh_per_s=0.01), "kWh left"),
    ],
    ids=["seconds", "kwh"],
)
def test_the_budget_callback_stops_a_seconds_or_kwh_budget_before_the_step_that_would_cross_it(
    crit: AcceptanceCriteria, spent: Cost, rates: Rates, unit: str
) -> None:
    # judging the partial model is a pass of 0.5e9 FLOPs, at this run's own rate of 1e9 FLOP/s: 0.5 s
    cb = BudgetCallback(crit, spent, eval_flops=0.5e9, rates=rates)
    meter = FakeMeter()
    cb.bind(meter, None)
    control = _control()
    steps = 0
    while not control.should_training_stop and steps < 100:
        meter.flops += 1e9
        meter.seconds += 1.0  # each step takes 1 s on the meter's clock (0.01 kWh at the measured rate)
        steps += 1
        cb.on_step_end(None, None, control)
    # 8 s (0.08 kWh) are left: after 7 steps, one more and the judging pass make 8.5 s (0.085 kWh)
    # > 8; after 6 they made 7.5 s (0.075 kWh), which fits
    assert steps == 7
    assert cb.stop_message is not None and unit in cb.stop_message and "after 7 steps" in cb.stop_message


def _steps_until_stopped(cb: BudgetCallback, evaluate_after: int | None = None) -> int:
    """Steps of 1 s and 1e9 FLOPs until ``cb`` stops the run; the Trainer evaluates after step ``evaluate_after``."""
    meter = FakeMeter()
    cb.bind(meter, None)
    control = _control()
    steps = 0
    while not control.should_training_stop and steps < 100:
        meter.flops, meter.seconds = meter.flops + 1e9, meter.seconds + 1.0
        steps += 1
        control.should_evaluate = steps == evaluate_after  # what the Trainer's flow callback decided
        cb.on_step_end(None, None, control)
    return steps


def test_an_evaluation_due_after_this_step_is_reserved_too() -> None:
    def watch() -> BudgetCallback:  # a validation pass is 1e9 FLOPs: 1 s at the run's 1e9 FLOP/s
        return BudgetCallback(AcceptanceCriteria(budget_seconds=10.0), Cost(), eval_flops=1e9, rates=Rates())

    # after 8 steps: 8 + 1 (the next step) + 1 (judging) = 10 s fits; after 9 it would be 11
    assert _steps_until_stopped(watch()) == 9
    # an evaluation due after step 8 adds its pass: 8 + 1 + 1 + 1 = 11 s, so the run stops there
    assert _steps_until_stopped(watch(), evaluate_after=8) == 8
    assert _steps_until_stopped(watch(), evaluate_after=7) == 9  # 7 + 1 + 1 + 1 = 10 s still fits


def test_without_an_energy_rate_the_callback_does_not_check_kwh() -> None:
    # codecarbon reports energy when a phase ends: with no rate measured earlier, kWh cannot be forecast
    cb = BudgetCallback(AcceptanceCriteria(budget_kwh=1e-9), Cost(), eval_flops=0.0, rates=Rates())
    meter = FakeMeter()
    cb.bind(meter, None)
    control = _control()
    for _ in range(20):
        meter.flops, meter.seconds = meter.flops + 1e9, meter.seconds + 1.0
        cb.on_step_end(None, None, control)
    assert not control.should_training_stop and cb.stop_message is None


def test_the_budget_watch_refuses_a_pass_outside_the_trainer_that_cannot_fit() -> None:
    crit = AcceptanceCriteria(budget_pflops=1.0, budget_seconds=100.0, budget_kwh=1.0)
    cb = BudgetCallback(crit, Cost(train_flops=0.6e15, wall_s=50.0), eval_flops=0.0, rates=Rates(1e13, 0.01))
    assert cb.refuses("a pass", 0.3e15) is None  # 0.9 PFLOPs, 80 s, 0.8 kWh: it fits
    why = cb.refuses("a pass", 0.5e15)  # 1.1 PFLOPs
    assert why is not None and why.startswith("budget: a pass was not started") and "PFLOPs left" in why
    cb.charge(Cost(wall_s=45.0))  # 95 s spent: 0.1 PFLOP at 1e13 FLOP/s is 10 s more
    assert "s left" in (cb.refuses("a pass", 0.1e15) or "")
    # without a measured FLOP rate the seconds and kWh of a pass are unknown: only FLOPs are checked
    blind = BudgetCallback(AcceptanceCriteria(budget_seconds=1.0), Cost(wall_s=5.0), 0.0, Rates())
    assert blind.refuses("a pass", 1e15) is None


def test_the_callback_reads_the_seconds_of_a_real_meter_from_its_clock() -> None:
    clock = FakeClock()
    clock.advance(1000.0)  # the clock's origin is not the phase's: only the elapsed time counts
    cb = BudgetCallback(AcceptanceCriteria(budget_seconds=5.5), Cost(), eval_flops=0.0, rates=Rates())
    control = _control()
    with Meter(NO_CODECARBON, phase="train", clock=clock) as meter:
        cb.bind(meter, None)
        steps = 0
        while not control.should_training_stop:
            meter.add_flops("train", 1e9)
            clock.advance(1.0)
            steps += 1
            cb.on_step_end(None, None, control)
        assert meter.so_far() == (steps * 1e9, 5.0)
    assert steps == 5  # 5 s + the next step's 1 s > 5.5 s
    assert meter.cost.wall_s == 5.0 and meter.so_far() == (5e9, 0.0)  # closed: nothing runs any more


# ----------------------------------------------------------------------------- the baseline, between its fits


@pytest.mark.parametrize(
    "crit, spent, rates",
    [
        (AcceptanceCriteria(budget_seconds=10.0), Cost(wall_s=2.0), Rates()),
        (AcceptanceCriteria(budget_kwh=0.1), Cost(energy_cpu_kwh=0.02), Rates(kwh_per_s=0.01)),
    ],
    ids=["seconds", "kwh"],
)
def test_the_baseline_watch_refuses_the_fit_forecast_to_cross_the_budget(
    crit: AcceptanceCriteria, spent: Cost, rates: Rates
) -> None:
    watch = FitBudget(crit, spent, rates)
    meter = FakeMeter()
    watch.bind(meter)
    fits = 0
    while watch.next_fit(f"fit {fits + 1}"):
        meter.seconds += 1.5 if fits == 0 else 1.0  # the first fit is the longest: it is the forecast
        fits += 1
    # after 6 fits (6.5 s) the next one, forecast at 1.5 s, still fits (2 + 6.5 + 1.5 = 10 s, or 0.1 kWh
    # at 0.01 kWh/s); after 7 (7.5 s) it would not (11 s, 0.11 kWh)
    assert fits == 7
    assert watch.stop_message is not None and "fit 8" in watch.stop_message and "left" in watch.stop_message
    assert not watch.next_fit("fit 9")  # once refused, the phase stays stopped


def test_the_baseline_watch_cannot_check_kwh_without_an_energy_rate_or_a_live_reading() -> None:
    watch = FitBudget(AcceptanceCriteria(budget_kwh=1e-9), Cost(), Rates())
    meter = FakeMeter()
    watch.bind(meter)
    for _ in range(5):
        assert watch.next_fit("a fit")
        meter.seconds += 1.0
    assert watch.stop_message is None


def test_the_baseline_watch_forecasts_kwh_from_the_live_reading_on_a_fresh_search() -> None:
    # no energy rate measured earlier (the baseline is the first phase): the live reading decides
    watch = FitBudget(AcceptanceCriteria(budget_kwh=0.1), Cost(), Rates())
    meter = LiveEnergyMeter()
    watch.bind(meter)
    fits = 0
    while watch.next_fit(f"fit {fits + 1}"):
        meter.seconds += 2.0 if fits == 0 else 1.0  # the first fit is the longest: it is the forecast
        meter.kwh += 0.02 if fits == 0 else 0.01  # 0.01 kWh per second
        fits += 1
    # after 7 fits (8 s, 0.08 kWh) the next, forecast at 2 s and this phase's 0.01 kWh/s, still fits
    # (0.1 kWh); after 8 (0.09 kWh) it would not (0.11 kWh)
    assert fits == 8
    assert watch.stop_message is not None and "fit 9" in watch.stop_message and "kWh" in watch.stop_message


# ----------------------------------------------------------------------------- real work on a fake clock


class OneSecondPerStep(TrainerCallback):
    """Advances the fake clock by one second at the end of each training step (before the budget check)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.clock.advance(1.0)


@pytest.mark.parametrize("budget", ["budget_seconds=12.5", "budget_kwh=0.125"], ids=["seconds", "kwh"])
def test_a_seconds_or_kwh_budget_stops_a_real_training_before_the_step_that_would_cross_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: str
) -> None:
    clock = FakeClock()
    reader = FakeEnergyReader(clock, kwh_per_s=0.01)
    monkeypatch.setattr(train_mod, "Meter", functools.partial(Meter, clock=clock, reader=reader))
    model = make_tiny_model(tmp_path / "tiny", layers=1)
    csv = write_csv(tmp_path / "data.csv", synthetic_rows(160))
    config = build_config(
        overrides=[
            f"data.source={csv}",
            f"criteria.{budget}",
            "train.epochs=4",
            "train.batch_size=16",
            "rules.enabled=false",
            "metering.codecarbon=false",
            f"output.out={tmp_path / 'run'}",
        ]
    )
    data = load_task_data(config.data)
    # 2 s (0.02 kWh) spent before this run; no judging pass reserved, so the stop is known to the step
    watch = BudgetCallback(config.criteria, Cost(wall_s=2.0, energy_cpu_kwh=0.02), 0.0, Rates(kwh_per_s=0.01))
    candidate = Candidate(name="tiny", kind="finetune", source=str(model))
    run = train_run(
        candidate,
        str(model),
        data,
        config,
        tmp_path / "run",
        RunKey("trial", "tiny", 1),
        extra_callbacks=[OneSecondPerStep(clock), watch],
    )
    # 10.5 s (0.105 kWh) were left: after 10 steps the next would make 11
    assert run.status == "budget" and run.message == watch.stop_message and "after 10 steps" in run.message
    assert run.details["steps"] == 10 < run.details["total_steps"]
    assert run.details["steps_saved"] == run.details["total_steps"] - 10
    # the run's metered cost is the fake clock's: 10 s, and 0.1 kWh at the fake reader's power
    assert run.cost.wall_s == 10.0 and run.cost.energy_kwh == pytest.approx(0.1)
    # the partial model was judged on the validation rows and kept, like any early-stopped run
    assert run.metrics and len(run.val_predictions) == data.validation.num_rows and run.artifact is not None


@pytest.mark.parametrize("budget", ["budget_seconds=4.5", "budget_kwh=0.045"], ids=["seconds", "kwh"])
def test_a_seconds_or_kwh_budget_smaller_than_the_baseline_stops_it_between_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: str
) -> None:
    clock = FakeClock()
    reader = FakeEnergyReader(clock, kwh_per_s=0.01)  # the live reading decides kWh on a fresh search
    monkeypatch.setattr(baseline_mod, "Meter", functools.partial(Meter, clock=clock, reader=reader))
    real = baseline_mod._pipeline
    monkeypatch.setattr(baseline_mod, "_pipeline", lambda c, seed: OneSecondFit(real(c, seed), clock))
    model = make_tiny_model(tmp_path / "tiny", layers=1)
    ladder = write_ladder(tmp_path / "ladder.yaml", [tiny_rung(model, "tiny")])
    # labels drawn at random: the baseline's partial model cannot meet the floor and be recommended
    rng = random.Random(0)
    data = write_csv(tmp_path / "data.csv", [(text, rng.choice(["pos", "neg"])) for text, _ in synthetic_rows(160)])
    overrides = [f"ladder.name={ladder}", f"data.source={data}", f"criteria.{budget}", "criteria.floor=0.99"]
    capped = advise(build_config(overrides=[*overrides, "metering.codecarbon=false", f"output.out={tmp_path / 'o'}"]))
    # 3 fits of C and 1 cross-validation fold took 4 s (0.04 kWh); the second fold, forecast at 1 s, would cross
    base = capped.baseline
    assert base.status == "budget" and base.message is not None
    assert "after 4 fits, cross-validation fold 2" in base.message
    assert base.cv is None  # the cross-validation did not complete: the verdict rests on validation
    assert base.cost.wall_s == 4.0 and base.cost.energy_kwh == pytest.approx(0.04)
    assert capped.runs == ()  # the climb ends: no transformer starts on a spent budget
    assert capped.outcome == "budget" and "baseline was stopped by the budget" in capped.stop_reason
    # the partial baseline is judged like any stopped run
    assert base.metrics and capped.verdicts["baseline"].state in ("fail", "undecided")
