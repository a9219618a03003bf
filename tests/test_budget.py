"""Hard budgets: a search stops inside a run before it would cross what the user allowed."""

# Which test shows each budget stopping each phase (issue #16's "Done when"). FLOPs are counted, not
# timed, so the FLOPs searches below are deterministic and run in the default suite. Seconds and kWh
# are decided on a fake clock and energy reader in tests/test_budget_decisions.py (default suite:
# "decisions"); the searches on the real clock, which compare the timings of two searches, are marked
# slow ("real clock"). Tests named test_from_* are in tests/test_incremental.py.
#
# | phase / budget    | --budget-pflops                          | --budget-kwh / --budget-seconds                          |
# |-------------------|------------------------------------------|----------------------------------------------------------|
# | baseline (TF-IDF) | not applicable: a TF-IDF fit has no      | decisions: test_a_seconds_or_kwh_budget_smaller_than_the_ |
# |                   | counted FLOPs (provenance not_applicable)| baseline_stops_it_between_fits, test_the_baseline_watch_*;|
# |                   |                                          | real clock: test_a_budget_smaller_than_the_baseline_*     |
# | trial, small      | test_a_flops_budget_smaller_than_one_    | decisions: test_a_seconds_or_kwh_budget_stops_a_real_     |
# | experiment        | training_stops_the_run_inside_the_budget | training_*, test_the_budget_callback_*; real clock:       |
# |                   | [trial], [small experiment]              | test_a_seconds_budget_*, test_a_kwh_budget_*              |
# | distillation      | test_a_flops_budget_too_small_for_the_   | real clock: test_a_seconds_or_kwh_budget_too_small_for_   |
# |                   | distillation_*; test_a_teacher_pass_that_| the_distillation_*; decisions: test_the_budget_watch_     |
# |                   | cannot_fit_the_budget_is_not_started     | refuses_a_pass_outside_the_trainer_that_cannot_fit        |
# | --from            | test_from_leaves_room_for_judging_*;     | real clock: test_from_a_seconds_or_kwh_budget_*; the same |
# |                   | test_from_stops_before_a_continuation_*  | callback and Trainer as a trial (decisions above)         |
#
# Tolerances: FLOPs <= budget + 5%; seconds <= budget + 5% + START_UP_S; kWh <= budget + 5% +
# START_UP_S at the run's own kWh per second.

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from advisor.advise import advise
from advisor.baseline import cross_validate as real_cross_validate
from advisor.budget import Rates, forecast_run
from advisor.cli import main
from advisor.config import build_config
from advisor.outcome import Report
from advisor.types import Cost
from tests.conftest import make_tiny_model, synthetic_rows, weaken_baseline, write_csv

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
#: metered seconds outside any run's step loop that a seconds budget cannot stop mid-way: saving
#: the partial model and timing its latency after the stop (stated in the README)
START_UP_S = 3.0


def test_the_forecast_of_a_run_is_the_meters_formula_over_the_datas_tokens() -> None:
    from transformers import BertConfig

    cfg = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    from advisor.flops import encoder_forward_flops

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
    return lambda out, *settings: advise(_config(tmp_path, ladder, data, out, *settings))


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
    assert capped.details["outcome"] == "budget" and "budget" in capped.stop_reason
    assert capped.details["budgets"]["pflops"]["allowed"] == pytest.approx(budget)
    assert capped.details["budgets"]["pflops"]["spent"] <= 1.05 * budget
    # the partial model was judged on the validation rows like any early-stopped run
    assert run.metrics and len(run.val_predictions) == len(first.val_predictions)
    if phase == "trial":
        assert capped.verdicts[run.run_id].state in ("fail", "undecided")


# real clock: two searches' timings are compared, which a busy machine can upset; the same stop is
# decided on a fake clock in test_budget_decisions.py
@pytest.mark.slow
@pytest.mark.parametrize("phase", ["trial", "small experiment"])
def test_a_seconds_budget_stops_the_run_inside_the_budget(
    advise_tiny: AdviseTiny, weak_baseline: None, phase: str
) -> None:
    small = ["tuning.small_fraction=0.5"] if phase == "small experiment" else []
    long = ["metering.codecarbon=false", "train.epochs=40", "tuning.epochs_max=40", *small]
    free = advise_tiny("free", *long)
    trial = free.runs[0]
    # half of one long training: the baseline's own timing noise (a few seconds) cannot decide it
    budget = free.baseline.cost.wall_s + 0.5 * trial.cost.wall_s
    capped = advise_tiny("capped", *long, f"criteria.budget_seconds={budget}")
    assert capped.runs[0].status == "budget" and capped.runs[0].run_id == trial.run_id
    assert capped.total_cost.wall_s <= 1.05 * budget + START_UP_S


# real clock: two searches' timings are compared, which a busy machine can upset; the same stop is
# decided on a fake clock in test_budget_decisions.py
@pytest.mark.slow
@pytest.mark.parametrize("phase", ["trial", "small experiment"])
def test_a_kwh_budget_stops_the_run_inside_the_budget(advise_tiny: AdviseTiny, weak_baseline: None, phase: str) -> None:
    small = ["tuning.small_fraction=0.5"] if phase == "small experiment" else []
    energy = ["metering.codecarbon=true", "train.epochs=16", *small]
    free = advise_tiny("free", *energy)
    trial = free.runs[0]
    assert trial.cost.energy_kwh > 0
    budget = free.baseline.cost.energy_kwh + 0.5 * trial.cost.energy_kwh
    capped = advise_tiny("capped", *energy, f"criteria.budget_kwh={budget}")
    assert capped.runs[0].status == "budget" and capped.runs[0].run_id == trial.run_id
    # energy is read when a phase ends; inside a run it is the seconds times the rate measured so far
    assert capped.total_cost.energy_kwh <= 1.05 * budget + START_UP_S * (trial.cost.energy_kwh / trial.cost.wall_s)


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


# real clock: two searches' timings are compared, which a busy machine can upset; the same stop is
# decided on a fake clock in test_budget_decisions.py
@pytest.mark.slow
@pytest.mark.parametrize("budget_name", ["seconds", "kwh"])
def test_a_budget_smaller_than_the_baseline_stops_it_between_fits(
    tmp_path: Path, one_rung: tuple[Path, Path], weak_baseline: None, monkeypatch: pytest.MonkeyPatch, budget_name: str
) -> None:
    import advisor.baseline as baseline_mod
    from advisor.baseline import fit_baseline
    from advisor.data import load_task_data

    monkeypatch.setattr(baseline_mod, "cross_validate", real_cross_validate)  # its folds are fits the budget stops

    ladder, _ = one_rung
    data = write_csv(tmp_path / "big.csv", synthetic_rows(1500))
    # kWh: a fresh search has measured no energy rate before the baseline; the meter's live reading decides
    energy = f"metering.codecarbon={'true' if budget_name == 'kwh' else 'false'}"
    free_config = _config(tmp_path, ladder, data, "free", energy)
    free = fit_baseline(load_task_data(free_config.data), free_config, tmp_path / "free")
    assert free.status == "ok" and free.details["cv"] is not None
    spent = free.cost.wall_s if budget_name == "seconds" else free.cost.energy_kwh
    assert spent > 0
    # well under the baseline's own cost: timing noise between the two fits cannot decide it
    budget = 0.3 * spent
    capped = advise(_config(tmp_path, ladder, data, "capped", energy, f"criteria.budget_{budget_name}={budget}"))
    assert capped.baseline.status == "budget" and "fit" in (capped.baseline.message or "")
    assert capped.runs == ()  # the climb ends: no transformer starts on a spent budget
    assert capped.details["outcome"] == "budget" and "baseline was stopped by the budget" in capped.stop_reason
    if budget_name == "seconds":
        assert capped.total_cost.wall_s <= 1.05 * budget + START_UP_S
    else:  # the start-up constant at the baseline's own kWh per second
        assert capped.total_cost.energy_kwh <= 1.05 * budget + START_UP_S * spent / free.cost.wall_s
    # the partial baseline is judged like any stopped run
    assert capped.baseline.metrics and capped.verdicts["baseline"].state in ("fail", "undecided")


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
    assert capped.details["outcome"] == "budget"
    assert "tiny-t1-student was stopped by the budget" in capped.stop_reason
    # the partial student was judged on the validation rows like any stopped run
    assert stopped.metrics and len(stopped.val_predictions) == len(student.val_predictions)


# timing-sensitive: the capped search must reach the distillation with less than half of the control
# spent beyond the free search's earlier phases; on an idle machine those phases are short and their
# noise can exceed that margin (seen once: the budget was spent before the distillation started). Run
# with `-m slow`; it passed in full-suite runs on the loaded machine and twice on its own.
@pytest.mark.slow
@pytest.mark.parametrize("budget_name", ["seconds", "kwh"])
def test_a_seconds_or_kwh_budget_too_small_for_the_distillation_stops_the_student_mid_training(
    advise_tiny: AdviseTiny, weak_baseline: None, budget_name: str
) -> None:
    # the distillation trains as many epochs as its teacher's trial: 48 make half of the control
    # (the student trained alone, kept when the tiny teacher is not ahead) several seconds, so timing
    # noise in the trial before it cannot decide where the budget stops the search
    energy = f"metering.codecarbon={'true' if budget_name == 'kwh' else 'false'}"
    common = [energy, "criteria.floor=0.75", "criteria.max_params=5", "train.epochs=48", "tuning.epochs_max=48"]

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
    # kWh: the start-up constant at the control's own kWh per second
    per_s = 1.0 if budget_name == "seconds" else phases["control"].energy_kwh / phases["control"].wall_s
    assert spent(capped.total_cost) <= 1.05 * budget + START_UP_S * per_s
    assert capped.details["outcome"] == "budget"
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
        return advise(_config(tmp_path_factory.mktemp("teacher-ahead"), ladder, data, "free", *DISTIL))


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
    capped = advise(_config(tmp_path, ladder, data, "capped", *DISTIL, f"criteria.budget_pflops={budget}"))
    stopped = capped.run("tiny-t1-student")
    assert stopped is not None and stopped.status == "budget" and "was not started" in (stopped.message or "")
    what = "scoring the teacher" if refused == "teacher" else "the teacher's logits pass"
    assert what in (stopped.message or "")
    # nothing of the refused pass was spent: the distillation's cost is the teacher passes before it
    spent = 0.0 if refused == "teacher" else phases["teacher"].flops + phases["control"].flops
    assert stopped.cost.flops == pytest.approx(spent)
    assert capped.total_cost.flops <= budget * 1e15
    assert capped.details["outcome"] == "budget" and "tiny-t1-student was stopped by the budget" in capped.stop_reason


def test_a_sampled_evaluation_reserves_its_share_and_the_judging_pass_over_the_whole_split() -> None:
    from advisor.budget import evaluation_reserve

    assert evaluation_reserve(100.0, 1000, 0) == (100.0, 100.0)  # every evaluation on all rows
    assert evaluation_reserve(100.0, 50, 64) == (100.0, 100.0)  # a split no larger than the sample
    # 64 of 1000 rows: an evaluation is 6.4 % of a pass; a stopped run costs that at the stop plus all rows
    assert evaluation_reserve(100.0, 1000, 64) == pytest.approx((6.4, 106.4))
