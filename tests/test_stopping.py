"""How a run ended, read from typed callbacks: which stop wins, and what each one records. Trains nothing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from transformers import TrainerCallback

from advisor.acceptance import AcceptanceCriteria
from advisor.climb.budget import BudgetCallback, Rates
from advisor.climb.pruning import PruningCallback
from advisor.health.rules import DivergenceRule, NanLossRule, RuleFiring
from advisor.training.best import EarlyStopping
from advisor.training.counting import CostCheckpoint
from advisor.training.stopping import RunStop, RunWatcher, StopsRun, bind_meter, run_stop, stopped_by
from advisor.types import Cost
from distill.interrupted import RunningCost


def _budget(message: str | None) -> BudgetCallback:
    cb = BudgetCallback(AcceptanceCriteria(budget_pflops=1.0), Cost(), eval_flops=0.0, rates=Rates())
    cb.stop_message = message
    return cb


def _fired(rule: TrainerCallback, step: int, message: str) -> TrainerCallback:
    rule.firing = RuleFiring(rule.name, step, message, {"loss": 9.0})  # type: ignore[attr-defined]
    return rule


def _early(stopped_at: int | None) -> EarlyStopping:
    early = EarlyStopping("accuracy", patience=2)
    early.stopped_step, early.best_step, early._best = stopped_at, 20, 0.75
    return early


def test_a_run_that_ran_its_course_is_ok_with_nothing_to_record() -> None:
    assert run_stop([NanLossRule(), _budget(None), _early(None)], 100, 100, "accuracy") == RunStop()


def test_the_earliest_health_rule_wins_over_the_budget_and_early_stopping() -> None:
    callbacks = [
        _fired(DivergenceRule(10, 3.0), 40, "diverging"),
        _fired(NanLossRule(), 30, "nan"),
        _budget("budget: past the 1 PFLOPs left"),
        _early(35),
    ]
    stop = run_stop(callbacks, 100, 40, "accuracy")
    assert stop.status == "stopped" and stop.message == "stopped by rule nan_loss at step 30: nan"
    assert stop.details == {"rule": {"rule": "nan_loss", "step": 30, "numbers": {"loss": 9.0}}, "steps_saved": 70}


def test_the_budget_stop_records_its_own_status_and_message_and_the_steps_not_run() -> None:
    stop = run_stop([NanLossRule(), _budget("budget: after 7 steps ..."), _early(5)], 100, 7, "accuracy")
    assert stop == RunStop("budget", "budget: after 7 steps ...", {"steps_saved": 93})


def test_early_stopping_keeps_the_run_ok_and_says_where_the_best_was() -> None:
    stop = run_stop([NanLossRule(), _budget(None), _early(60)], 100, 60, "accuracy")
    assert stop.status == "ok" and stop.message is None and stop.details["steps_saved"] == 40
    assert stop.details["early_stop"].startswith("early-stopped at step 60: no new best accuracy for 2 evaluations")


def test_only_a_typed_stopping_callback_counts_not_one_that_happens_to_have_a_stop_message() -> None:
    class LooksLikeOne(TrainerCallback):
        stop_status = "budget"
        stop_message = "not a StopsRun"

    assert run_stop([LooksLikeOne()], 100, 10, "accuracy") == RunStop()

    class Pruned(StopsRun):
        pass

    pruned = Pruned()
    pruned.stop_message = "pruned at step 10: worse than the best trial"
    assert stopped_by([LooksLikeOne(), pruned]) is pruned
    assert run_stop([pruned], 100, 10, "accuracy") == RunStop("stopped", pruned.stop_message, {"steps_saved": 90})


def test_the_budget_watch_the_pruner_and_the_cost_savers_are_bound_to_the_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    trial = SimpleNamespace(study=SimpleNamespace(pruner=None), number=0)
    budget, saver, running = _budget(None), CostCheckpoint(lambda cost, step: None), RunningCost(tmp_path, "s")
    assert isinstance(budget, StopsRun) and budget.stop_status == "budget"
    assert isinstance(PruningCallback(trial, "accuracy"), StopsRun)  # type: ignore[arg-type]
    assert PruningCallback.stop_status == "stopped"
    meter, counter = object(), object()
    bind_meter([budget, saver, running, NanLossRule()], meter, counter)
    assert budget.meter is meter and saver.meter is meter and running.meter is meter
    assert budget.counter is counter and saver.counter is counter and running.counter is counter
    assert all(isinstance(cb, RunWatcher) for cb in (budget, saver, running))


@pytest.mark.parametrize("message", [None, "budget: refused"])
def test_binding_a_budget_watch_to_a_new_run_forgets_the_last_runs_stop(message: str | None) -> None:
    budget = _budget(message)
    bind_meter([budget], object(), None)
    assert budget.stop_message is None and stopped_by([budget]) is None
