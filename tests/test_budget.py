"""Hard budgets: a search stops inside a run before it would cross what the user allowed."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from advisor.advise import advise
from advisor.budget import BudgetCallback, FitBudget, Rates, forecast_run
from advisor.cli import main
from advisor.config import build_config
from advisor.types import AcceptanceCriteria, Cost
from tests.conftest import make_tiny_model, synthetic_rows, write_csv

FAST = [
    "train.epochs=6",
    "train.learning_rate=5e-3",
    "tuning.lr_max=1e-2",
    "tuning.epochs_max=16",
    "train.batch_size=8",
    "train.freeze_embeddings=false",
    "rules.enabled=false",
    "tuning.trials_per_rung=1",
]
#: metered seconds outside any run's step loop that a seconds budget cannot stop mid-way: saving
#: the partial model and timing its latency after the stop (stated in the README)
START_UP_S = 3.0


class FakeMeter:
    def __init__(self) -> None:
        self.flops, self.seconds = 0.0, 0.0

    def so_far(self) -> tuple[float, float]:
        return self.flops, self.seconds


def test_the_budget_callback_stops_before_the_step_that_would_cross_the_budget() -> None:
    crit = AcceptanceCriteria(budget_pflops=1.0)
    cb = BudgetCallback(crit, Cost(train_flops=0.2e15), eval_flops=0.05e15, rates=Rates())
    meter = FakeMeter()
    cb.bind(meter, None)
    control = SimpleNamespace(should_training_stop=False, should_evaluate=False, should_save=False)
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


@pytest.fixture
def one_rung(tmp_path: Path) -> tuple[Path, Path]:
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


@pytest.mark.parametrize("phase", ["trial", "small experiment"])
def test_a_flops_budget_smaller_than_one_training_stops_the_run_inside_the_budget(
    tmp_path: Path, one_rung: tuple[Path, Path], weak_baseline: None, phase: str
) -> None:
    ladder, data = one_rung
    small = ["tuning.small_fraction=0.5"] if phase == "small experiment" else []
    free = advise(_config(tmp_path, ladder, data, "free", "metering.codecarbon=false", *small))
    first = free.runs[0]
    assert first.status == "ok"
    budget = 0.5 * first.cost.flops / 1e15
    capped = advise(
        _config(
            tmp_path, ladder, data, "capped", "metering.codecarbon=false", f"criteria.budget_pflops={budget}", *small
        )
    )
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


def test_a_seconds_budget_stops_the_run_inside_the_budget(
    tmp_path: Path, one_rung: tuple[Path, Path], weak_baseline: None
) -> None:
    ladder, data = one_rung
    long = ["metering.codecarbon=false", "train.epochs=40", "tuning.epochs_max=40"]
    free = advise(_config(tmp_path, ladder, data, "free", *long))
    trial = free.runs[0]
    # half of one long training: the baseline's own timing noise (a few seconds) cannot decide it
    budget = free.baseline.cost.wall_s + 0.5 * trial.cost.wall_s
    capped = advise(_config(tmp_path, ladder, data, "capped", *long, f"criteria.budget_seconds={budget}"))
    assert capped.runs[0].status == "budget"
    assert capped.total_cost.wall_s <= 1.05 * budget + START_UP_S


def test_a_kwh_budget_stops_the_run_inside_the_budget(
    tmp_path: Path, one_rung: tuple[Path, Path], weak_baseline: None
) -> None:
    ladder, data = one_rung
    free = advise(_config(tmp_path, ladder, data, "free", "metering.codecarbon=true", "train.epochs=16"))
    trial = free.runs[0]
    assert trial.cost.energy_kwh > 0
    budget = free.baseline.cost.energy_kwh + 0.5 * trial.cost.energy_kwh
    capped = advise(
        _config(
            tmp_path,
            ladder,
            data,
            "capped",
            "metering.codecarbon=true",
            "train.epochs=16",
            f"criteria.budget_kwh={budget}",
        )
    )
    assert capped.runs[0].status == "budget"
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


def test_the_baseline_watch_cannot_check_kwh_without_an_energy_rate() -> None:
    watch = FitBudget(AcceptanceCriteria(budget_kwh=1e-9), Cost(), Rates())
    meter = FakeMeter()
    watch.bind(meter)
    for _ in range(5):
        assert watch.next_fit("a fit")
        meter.seconds += 1.0
    assert watch.stop_message is None


def test_a_seconds_budget_smaller_than_the_baseline_stops_it_between_fits(
    tmp_path: Path, one_rung: tuple[Path, Path], weak_baseline: None
) -> None:
    from advisor.baseline import fit_baseline
    from advisor.data import load_task_data

    ladder, _ = one_rung
    data = write_csv(tmp_path / "big.csv", synthetic_rows(1500))
    free_config = _config(tmp_path, ladder, data, "free", "metering.codecarbon=false")
    free = fit_baseline(load_task_data(free_config.data), free_config, tmp_path / "free")
    assert free.status == "ok" and free.details["cv"] is not None
    # well under the baseline's own time: timing noise between the two fits cannot decide it
    budget = 0.3 * free.cost.wall_s
    capped = advise(
        _config(tmp_path, ladder, data, "capped", "metering.codecarbon=false", f"criteria.budget_seconds={budget}")
    )
    assert capped.baseline.status == "budget" and "fit" in (capped.baseline.message or "")
    assert capped.runs == ()  # the climb ends: no transformer starts on a spent budget
    assert capped.details["outcome"] == "budget" and "baseline was stopped by the budget" in capped.stop_reason
    assert capped.total_cost.wall_s <= 1.05 * budget + START_UP_S
    # the partial baseline is judged like any stopped run
    assert capped.baseline.metrics and capped.verdicts["baseline"].state in ("fail", "undecided")


# ----------------------------------------------------------------------------- distillation


def test_a_flops_budget_too_small_for_the_distillation_stops_the_student_mid_training(
    tmp_path: Path, one_rung: tuple[Path, Path], weak_baseline: None
) -> None:
    ladder, data = one_rung
    # the trial meets the floor but not max_params: the climb distils it
    common = ["metering.codecarbon=false", "criteria.floor=0.75", "criteria.max_params=5"]
    free = advise(_config(tmp_path, ladder, data, "free", *common))
    student = free.run("tiny-t1-student")
    assert student is not None and student.status == "ok", free.stop_reason
    phases = {k: Cost.from_dict(v) for k, v in student.details["distill_phases"].items()}
    # the tiny teacher is not ahead of its half-depth student trained alone: the decide-first check
    # keeps that control (trained first) and no distilled student or teacher logits are paid for
    assert student.details["student_path"] == "control" and "teacher_logits" not in phases
    before_training = free.total_cost.flops - student.cost.flops + phases["teacher"].flops
    # room for the teacher's passes and half of the control's training and judging
    budget = (before_training + 0.5 * phases["control"].flops) / 1e15
    capped = advise(_config(tmp_path, ladder, data, "capped", *common, f"criteria.budget_pflops={budget}"))
    stopped = capped.run("tiny-t1-student")
    assert stopped is not None and stopped.status == "budget" and "budget" in (stopped.message or "")
    assert capped.run("tiny-t1").status == "ok"  # the teacher's trial fitted and was not touched
    assert 0 < stopped.details["steps"] < student.details["steps"]
    assert capped.total_cost.flops <= 1.05 * budget * 1e15
    assert capped.details["outcome"] == "budget"
    assert "tiny-t1-student was stopped by the budget" in capped.stop_reason
    # the partial student was judged on the validation rows like any stopped run
    assert stopped.metrics and len(stopped.val_predictions) == len(student.val_predictions)
