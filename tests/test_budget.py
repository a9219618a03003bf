"""Hard budgets: a search stops inside a run before it would cross what the user allowed."""

# Which test shows each budget stopping each phase (issue #16's "Done when"). FLOPs are counted, not
# timed, so the FLOPs searches are deterministic. Seconds and kWh are decided on a fake clock that only
# the work advances (the ``work_clock`` fixture: one second per training step and per TF-IDF fit, a
# constant power), so two searches of the same work spend the same to the step whatever else the
# machine does: no test here races real time. The pure decisions are in tests/test_budget_decisions.py
# ("decisions"). Tests named test_from_* are in tests/test_incremental.py.
#
# | phase / budget    | --budget-pflops                          | --budget-kwh / --budget-seconds                          |
# |-------------------|------------------------------------------|----------------------------------------------------------|
# | baseline (TF-IDF) | not applicable: a TF-IDF fit has no      | decisions: test_a_seconds_or_kwh_budget_smaller_than_the_ |
# |                   | counted FLOPs (provenance not_applicable)| baseline_stops_it_between_fits, test_the_baseline_watch_* |
# | trial, small      | test_a_flops_budget_smaller_than_one_    | test_a_seconds_or_kwh_budget_stops_the_run_inside_the_    |
# | experiment        | training_stops_the_run_inside_the_budget | budget; decisions: test_a_seconds_or_kwh_budget_stops_a_  |
# |                   | [trial], [small experiment]              | real_training_*, test_the_budget_callback_*               |
# | distillation      | test_a_flops_budget_too_small_for_the_   | test_a_seconds_or_kwh_budget_too_small_for_the_distill-   |
# |                   | distillation_*; test_a_teacher_pass_that_| ation_*; decisions: test_the_budget_watch_refuses_a_pass_ |
# |                   | cannot_fit_the_budget_is_not_started     | outside_the_trainer_that_cannot_fit                       |
# | --from            | test_from_leaves_room_for_judging_*;     | test_from_a_seconds_or_kwh_budget_*                       |
# |                   | test_from_stops_before_a_continuation_*  |                                                           |
#
# Tolerance of the FLOPs searches: <= budget + 5% (the judging pass is forecast); the fake clock's
# seconds and kWh stay within the budget itself.

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from advisor.advise import advise
from advisor.cli import main
from advisor.climb.budget import Rates, forecast_run
from advisor.config.settings import build_config
from advisor.outcome import Report
from advisor.types import Cost
from distill.compact import distil_run
from tests.conftest import FakeClock, make_tiny_model, synthetic_rows, weaken_baseline, write_csv

FAST = [
    "train.epochs=6",
    "train.learning_rate=5e-3",
    "tuning.lr_max=1e-2",
    "tuning.epochs_max=16",
    "train.batch_size=8",
    "train.freeze_embeddings=false",
    "rules.enabled=false",
    "tuning.trials_per_rung=1",
    "ladder.probes=false",  # these tests are about fine-tune rungs (probes: tests/test_probe.py)
]


def test_the_forecast_of_a_run_is_the_meters_formula_over_the_datas_tokens() -> None:
    from transformers import BertConfig

    cfg = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    from advisor.metering.flops import encoder_forward_flops

    f = forecast_run(cfg, [10, 20], [10], epochs=2, evals_per_epoch=1, num_labels=2, rates=Rates(flops_per_s=1e9))
    fwd = encoder_forward_flops(cfg, 10, 2) + encoder_forward_flops(cfg, 20, 2)
    assert f.train_flops == pytest.approx(3 * fwd * 2)
    assert f.eval_flops == pytest.approx(encoder_forward_flops(cfg, 10, 2) * 2)  # 2 epoch evals of the whole split
    assert f.wall_s == pytest.approx(f.flops / 1e9)
    # evaluations on a 2-row sample of 4 rows, then one pass over all 4 for the kept weights
    g = forecast_run(cfg, [10], [10] * 4, 2, 1, 2, Rates(flops_per_s=1e9), eval_rows=2)
    assert g.eval_flops == pytest.approx(encoder_forward_flops(cfg, 10, 2) * (2 * 2 + 4))


@pytest.fixture(scope="module")
def one_rung(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A one-rung ladder (a 2-layer tiny BERT) and its 240 rows, shared by the module: nothing writes to them."""
    tmp_path = tmp_path_factory.mktemp("one-rung")
    model = make_tiny_model(tmp_path / "tiny", seed=0, layers=2, hidden=32)
    ladder = tmp_path / "ladder.yaml"
    rung = {
        "name": "tiny",
        "source": str(model),
        "description": "2 layers",
        "params_total": 20_000,
        "params_non_embedding": 18_000,
        "layers": 2,
        "hidden": 32,
    }
    ladder.write_text(yaml.safe_dump({"rungs": [rung]}))
    data = write_csv(tmp_path / "data.csv", synthetic_rows(240))
    return ladder, data


def _config(tmp_path: Path, ladder: Path, data: Path, out: str, *extra: str):  # type: ignore[no-untyped-def]
    return build_config(
        overrides=[
            *FAST,
            f"ladder.name={ladder}",
            f"data.source={data}",
            "criteria.floor=0.99",
            f"output.out={tmp_path / out}",
            *extra,
        ]
    )


#: ``advise_tiny(out, *settings)``: advise on the one-rung ladder and its data, into ``tmp_path/out``
AdviseTiny = Callable[..., Report]


@pytest.fixture
def advise_tiny(tmp_path: Path, one_rung: tuple[Path, Path]) -> AdviseTiny:
    ladder, data = one_rung
    # with greenladder's distiller, as the advise command and select_model hand it to the climb
    return lambda out, *settings: advise(_config(tmp_path, ladder, data, out, *settings), distiller=distil_run)


@pytest.mark.parametrize("phase", ["trial", "small experiment"])
def test_a_flops_budget_smaller_than_one_training_stops_the_run_inside_the_budget(
    advise_tiny: AdviseTiny, weak_baseline: None, phase: str
) -> None:
    small = ["tuning.small_fraction=0.5"] if phase == "small experiment" else []
    free = advise_tiny("free", "metering.codecarbon=false", *small)
    first = free.runs[0]
    assert first.status == "ok"
    budget = 0.5 * first.cost.flops / 1e15
    capped = advise_tiny("capped", "metering.codecarbon=false", *small, f"criteria.budget_pflops={budget}")
    run = capped.runs[0]
    assert run.status == "budget" and "budget" in (run.message or "")
    assert run.details["steps"] < first.details["steps"]
    assert capped.total_cost.flops <= 1.05 * budget * 1e15
    assert capped.outcome == "budget" and "budget" in capped.stop_reason
    assert capped.details["budgets"]["pflops"]["allowed"] == pytest.approx(budget)
    assert capped.details["budgets"]["pflops"]["spent"] <= 1.05 * budget
    # the partial model was judged on the validation rows like any early-stopped run
    assert run.metrics and len(run.val_predictions) == len(first.val_predictions)
    if phase == "trial":
        assert capped.verdicts[run.run_id].state in ("fail", "undecided")


@pytest.mark.parametrize("phase", ["trial", "small experiment"])
@pytest.mark.parametrize("budget_name", ["seconds", "kwh"])
def test_a_seconds_or_kwh_budget_stops_the_run_inside_the_budget(
    advise_tiny: AdviseTiny, weak_baseline: None, work_clock: FakeClock, phase: str, budget_name: str
) -> None:
    small = ["tuning.small_fraction=0.5"] if phase == "small experiment" else []
    energy = [f"metering.codecarbon={'true' if budget_name == 'kwh' else 'false'}", *small]

    def spent(cost: Cost) -> float:
        return cost.wall_s if budget_name == "seconds" else cost.energy_kwh

    free = advise_tiny("free", *energy)
    trial = free.runs[0]
    assert trial.status == "ok" and trial.cost.wall_s == trial.details["steps"]  # one fake second a step
    budget = spent(free.baseline.cost) + 0.5 * spent(trial.cost)
    capped = advise_tiny("capped", *energy, f"criteria.budget_{budget_name}={budget}")
    stopped = capped.runs[0]
    assert stopped.status == "budget" and stopped.run_id == trial.run_id, capped.stop_reason
    # stopped before the step that would cross, with the judging pass (forecast at the rate measured
    # so far) reserved: at most half the trial's steps fit after the baseline's fits
    assert 0 < stopped.details["steps"] <= trial.details["steps"] // 2
    assert spent(capped.total_cost) <= budget
    assert capped.outcome == "budget" and "budget" in capped.stop_reason
    assert stopped.metrics and len(stopped.val_predictions) == len(trial.val_predictions)


def test_an_exhausted_budget_exits_1_and_says_what_was_spent(
    tmp_path: Path, one_rung: tuple[Path, Path], weak_baseline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    ladder, data = one_rung
    args = ["--data", str(data), "--ladder", str(ladder), "--target", "accuracy=0.99", "--out", str(tmp_path / "cli")]
    sets = [x for s in [*FAST, "metering.codecarbon=false", "criteria.budget_pflops=1e-9"] for x in ("--set", s)]
    code = main([*args, *sets])
    out = capsys.readouterr().out
    assert code == 1
    assert "budget: spent" in out and "PFLOPs" in out


# ----------------------------------------------------------------------------- the baseline, between its fits


# ----------------------------------------------------------------------------- distillation


def test_a_flops_budget_too_small_for_the_distillation_stops_the_student_mid_training(
    advise_tiny: AdviseTiny, weak_baseline: None
) -> None:
    # the trial meets the floor but not max_params: the climb distils it
    common = ["metering.codecarbon=false", "criteria.floor=0.75", "criteria.max_params=5"]
    free = advise_tiny("free", *common)
    student = free.run("tiny-t1-student")
    assert student is not None and student.status == "ok", free.stop_reason
    phases = {k: Cost.from_dict(v) for k, v in student.details["distill_phases"].items()}
    # the tiny teacher is not ahead of its half-depth student trained alone: the decide-first check
    # keeps that control (trained first) and no distilled student or teacher logits are paid for
    assert student.details["student_path"] == "control" and "teacher_logits" not in phases
    before_training = free.total_cost.flops - student.cost.flops + phases["teacher"].flops
    # room for the teacher's passes and half of the control's training and judging
    budget = (before_training + 0.5 * phases["control"].flops) / 1e15
    capped = advise_tiny("capped", *common, f"criteria.budget_pflops={budget}")
    stopped = capped.run("tiny-t1-student")
    assert stopped is not None and stopped.status == "budget" and "budget" in (stopped.message or "")
    assert capped.run("tiny-t1").status == "ok"  # the teacher's trial fitted and was not touched
    assert 0 < stopped.details["steps"] < student.details["steps"]
    assert capped.total_cost.flops <= 1.05 * budget * 1e15
    assert capped.outcome == "budget"
    assert "tiny-t1-student was stopped by the budget" in capped.stop_reason
    # the partial student was judged on the validation rows like any stopped run
    assert stopped.metrics and len(stopped.val_predictions) == len(student.val_predictions)


@pytest.mark.parametrize("budget_name", ["seconds", "kwh"])
def test_a_seconds_or_kwh_budget_too_small_for_the_distillation_stops_the_student_mid_training(
    advise_tiny: AdviseTiny, weak_baseline: None, work_clock: FakeClock, budget_name: str
) -> None:
    energy = f"metering.codecarbon={'true' if budget_name == 'kwh' else 'false'}"
    common = [energy, "criteria.floor=0.75", "criteria.max_params=5"]

    def spent(cost: Cost) -> float:
        return cost.wall_s if budget_name == "seconds" else cost.energy_kwh

    free = advise_tiny("free", *common)
    student = free.run("tiny-t1-student")
    assert student is not None and student.status == "ok", free.stop_reason
    phases = {k: Cost.from_dict(v) for k, v in student.details["distill_phases"].items()}
    assert student.details["student_path"] == "control" and spent(phases["control"]) > 0
    before_training = spent(free.total_cost) - spent(student.cost) + spent(phases["teacher"])
    budget = before_training + 0.5 * spent(phases["control"])
    capped = advise_tiny("capped", *common, f"criteria.budget_{budget_name}={budget}")
    stopped = capped.run("tiny-t1-student")
    assert stopped is not None and stopped.status == "budget" and "budget" in (stopped.message or ""), (
        capped.stop_reason
    )
    assert capped.run("tiny-t1").status == "ok"  # the teacher's trial fitted and was not touched
    assert 0 < stopped.details["steps"] < student.details["steps"]
    assert spent(capped.total_cost) <= budget  # stopped before the step that would cross it
    assert capped.outcome == "budget"
    assert "tiny-t1-student was stopped by the budget" in capped.stop_reason
    assert stopped.metrics and len(stopped.val_predictions) == len(student.val_predictions)


def _teacher_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny models cannot make a teacher that beats its own half-depth student: the check's evidence
    is real, its verdict forced, so the logits pass (paid only when the teacher is ahead) is reached."""
    import dataclasses

    import distill.pipeline

    real = distill.pipeline.teacher_vs_control
    monkeypatch.setattr(
        distill.pipeline,
        "teacher_vs_control",
        lambda *a, **k: dataclasses.replace(real(*a, **k), verdict="teacher_better"),
    )


#: the trial meets the floor but not max_params: the climb distils it
DISTIL = ["metering.codecarbon=false", "criteria.floor=0.75", "criteria.max_params=5"]


@pytest.fixture(scope="module")
def free_with_teacher_ahead(one_rung: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Report:
    """The search without a budget, its teacher forced ahead (one search for both refused passes)."""
    ladder, data = one_rung
    with pytest.MonkeyPatch.context() as mp:
        weaken_baseline(mp)
        _teacher_ahead(mp)
        return advise(
            _config(tmp_path_factory.mktemp("teacher-ahead"), ladder, data, "free", *DISTIL), distiller=distil_run
        )


@pytest.mark.parametrize("refused", ["teacher", "teacher_logits"])
def test_a_teacher_pass_that_cannot_fit_the_budget_is_not_started(
    tmp_path: Path,
    one_rung: tuple[Path, Path],
    free_with_teacher_ahead: Report,
    weak_baseline: None,
    refused: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _teacher_ahead(monkeypatch)
    ladder, data = one_rung
    free = free_with_teacher_ahead
    student = free.run("tiny-t1-student")
    assert student is not None and student.status == "ok", free.stop_reason
    phases = {k: Cost.from_dict(v) for k, v in student.details["distill_phases"].items()}
    before = free.total_cost.flops - student.cost.flops  # the baseline, the trial and its test scoring
    if refused == "teacher_logits":
        before += phases["teacher"].flops + phases["control"].flops
    # room for half of the refused pass: started, it would have crossed the budget
    budget = (before + 0.5 * phases[refused].flops) / 1e15
    capped = advise(
        _config(tmp_path, ladder, data, "capped", *DISTIL, f"criteria.budget_pflops={budget}"), distiller=distil_run
    )
    stopped = capped.run("tiny-t1-student")
    assert stopped is not None and stopped.status == "budget" and "was not started" in (stopped.message or "")
    what = "scoring the teacher" if refused == "teacher" else "the teacher's logits pass"
    assert what in (stopped.message or "")
    # nothing of the refused pass was spent: the distillation's cost is the teacher passes before it
    spent = 0.0 if refused == "teacher" else phases["teacher"].flops + phases["control"].flops
    assert stopped.cost.flops == pytest.approx(spent)
    assert capped.total_cost.flops <= budget * 1e15
    assert capped.outcome == "budget" and "tiny-t1-student was stopped by the budget" in capped.stop_reason


def test_a_sampled_evaluation_reserves_its_share_and_the_judging_pass_over_the_whole_split() -> None:
    from advisor.climb.budget import evaluation_reserve

    assert evaluation_reserve(100.0, 1000, 0) == (100.0, 100.0)  # every evaluation on all rows
    assert evaluation_reserve(100.0, 50, 64) == (100.0, 100.0)  # a split no larger than the sample
    # 64 of 1000 rows: an evaluation is 6.4 % of a pass; a stopped run costs that at the stop plus all rows
    assert evaluation_reserve(100.0, 1000, 64) == pytest.approx((6.4, 106.4))
