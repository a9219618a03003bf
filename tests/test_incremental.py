"""Incremental training (``advise --from``): continue an earlier recommendation on expanded data."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest

import advisor.climb.continuing as continuing_mod
import advisor.incremental.executor as incremental_mod
from advisor.advise import advise
from advisor.cli import main
from advisor.config.settings import build_config
from advisor.errors import DataError
from advisor.incremental.comparison import forecast_scratch, paired_difference
from advisor.incremental.head import extend_head
from advisor.incremental.inputs import training_rows
from advisor.models.loading import load_for_classification
from advisor.runkey import RunKey
from advisor.types import Candidate, Cost, RunResult
from tests.conftest import (
    FakeClock,
    copy_run_dir,
    make_tiny_model,
    synthetic_rows,
    tiny_rung,
    weaken_baseline,
    write_csv,
    write_ladder,
)
from tests.test_advise import FAST, _config


@pytest.fixture
def ladder(tmp_path: Path) -> Path:
    """A one-rung ladder of a tiny random BERT (the earlier climb recommends it)."""
    a = make_tiny_model(tmp_path / "tiny-a", seed=0, layers=1, hidden=32)
    return write_ladder(tmp_path / "ladder.yaml", [tiny_rung(a, "tiny-a", description="1 layer")])


# ----------------------------------------------------------------------------- pure parts


def test_paired_difference_is_zero_for_the_same_predictions_and_excludes_zero_for_a_clearly_better_model() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    noisy = np.where(rng.random(200) < 0.4, 1 - y, y)  # ~60% right
    same = paired_difference(y, noisy, noisy, "accuracy", 2)
    assert same["difference"] == same["low"] == same["high"] == 0.0 and same["n"] == 200
    better = paired_difference(y, y, noisy, "macro_f1", 2)
    assert better["a"] == 1.0 and better["low"] > 0.25  # ~0.4 better: the interval is nowhere near 0
    assert better["low"] <= better["difference"] <= better["high"]
    close = paired_difference(y, np.where(np.arange(200) == 0, 1 - y, y), y, "accuracy", 2)
    assert close["low"] < 0 <= close["high"]  # one row apart: the interval holds 0


def test_the_from_scratch_forecast_scales_the_earlier_cost_by_training_tokens() -> None:
    earlier = RunResult(
        key=RunKey("trial", "r", 1),
        candidate=Candidate(name="r", kind="finetune", source="x"),
        hyperparameters={"epochs": 3.0},
        status="ok",
        metrics={"accuracy": 0.9},
        cost=Cost(wall_s=10.0, train_flops=1e12, energy_cpu_kwh=0.001, peak_rss_mb=500.0),
        details={"train_examples": 100},
    )
    cost, basis = forecast_scratch(earlier, {"rows": 999, "mean_words": 20.0}, {"rows": 300, "mean_words": 10.0})
    assert cost.train_flops == pytest.approx(1.5e12) and cost.wall_s == pytest.approx(15.0)  # 300x10 / 100x20
    assert basis.startswith("forecast: ") and "x 1.50" in basis


def test_extending_the_head_keeps_the_rows_of_the_labels_it_knew(tmp_path: Path) -> None:
    from advisor.training.train import save_model_folder

    model, tok = load_for_classification(str(make_tiny_model(tmp_path / "tiny")), ["neg", "pos"])
    save_model_folder(model, tok, tmp_path / "trained")
    config = build_config(overrides=FAST)
    out = extend_head(tmp_path / "trained", ["neg", "pos"], ["mixed", "neg", "pos"], tmp_path / "extended", config)
    extended, _ = load_for_classification(str(out), ["mixed", "neg", "pos"])
    w_old, w_new = model.classifier.weight.detach(), extended.classifier.weight.detach()
    assert w_new.shape[0] == 3
    assert np.allclose(w_new[1], w_old[0]) and np.allclose(w_new[2], w_old[1])  # moved by name, not index
    assert np.allclose(extended.classifier.bias.detach()[1:], model.classifier.bias.detach())
    assert not np.allclose(w_new[0], w_old[0])


def test_replay_keeps_every_new_row_and_the_asked_share_of_the_earlier_ones() -> None:
    import datasets

    from advisor.data.task import TaskData, column

    rows = _rows(40, 0, "x")
    split = datasets.Dataset.from_dict({"text": [t for t, _ in rows], "label": [int(y == "pos") for _, y in rows]})
    data = TaskData(split, split, split, ("neg", "pos"), "test", "text", "label")
    seen = frozenset(t for t, _ in rows[:30])
    config = build_config(overrides=["incremental.replay_fraction=0.5"])
    trained, schedule = training_rows(data, seen, config)
    texts = column(trained.train, "text")
    assert schedule == {"new_rows": 10, "earlier_rows": 30, "earlier_rows_replayed": 15}
    assert set(t for t, _ in rows[30:]) <= set(texts) and len(texts) == 25
    everything, unknown = training_rows(data, None, config)  # earlier rows unknown: train on all
    assert everything.train.num_rows == 40 and unknown["earlier_rows"] == 0


# ----------------------------------------------------------------------------- continuing


def _rows(n: int, seed: int, tag: str) -> list[tuple[str, str]]:
    return [(f"{t} {tag}", y) for t, y in synthetic_rows(n, seed=seed)]


@pytest.fixture(scope="module")
def earlier_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An earlier run directory whose recommendation is tiny-a, trained on 200 rows (one climb per module)."""
    root = tmp_path_factory.mktemp("earlier")
    a = make_tiny_model(root / "tiny-a", seed=0, layers=1, hidden=32)
    ladder = write_ladder(root / "ladder.yaml", [tiny_rung(a, "tiny-a", description="1 layer")])
    first = write_csv(root / "first.csv", _rows(200, 0, "a"))
    with pytest.MonkeyPatch.context() as mp:
        weaken_baseline(mp)
        report = advise(_config(root, ladder, first, floor=0.75))
    assert report.recommendation == "tiny-a-t1"
    return root / "run"


@pytest.fixture
def earlier(tmp_path: Path, earlier_once: Path, weak_baseline: None) -> Path:
    """This test's copy of the earlier run directory; the baseline stays weak in the test's own climbs."""
    return copy_run_dir(earlier_once, tmp_path / "run")


def _earlier_hp(earlier: Path) -> dict:
    doc = json.loads((earlier / "report.json").read_text())
    return next(r for r in doc["runs"] if r["run_id"] == doc["recommendation"]["run_id"])["hyperparameters"]


def _from_config(tmp_path: Path, rows: list[tuple[str, str]], *extra: str):  # type: ignore[no-untyped-def]
    expanded = write_csv(tmp_path / "expanded.csv", rows)
    return build_config(
        overrides=[*FAST, f"data.source={expanded}", "criteria.floor=0.75", f"output.out={tmp_path / 'run2'}", *extra]
    )


def test_from_continues_with_a_continuation_schedule_warm_started_and_compared_and_a_rerun_trains_nothing(
    tmp_path: Path, earlier: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _from_config(tmp_path, _rows(200, 0, "a") + _rows(200, 1, "b"))  # the earlier rows and as many new
    again = advise(config, from_run=earlier)
    ids = [r.run_id for r in again.runs]
    assert ids[0] == "tiny-a-earlier" and ids[1] == "tiny-a-c1", ids
    assert again.recommendation == "tiny-a-c1", again.stop_reason
    first = json.loads((earlier / "report.json").read_text())["runs"][0]
    c1 = again.run("tiny-a-c1")
    assert c1.candidate.kind == "incremental" and c1.candidate.parent_run == str(earlier)
    assert c1.hyperparameters["learning_rate"] == pytest.approx(first["hyperparameters"]["learning_rate"] * 0.33)
    assert c1.hyperparameters["epochs"] == 1.0 < first["hyperparameters"]["epochs"]
    inc = again.details["incremental"]
    assert inc["warm_start_trials"] == 1 and inc["from_run"] == "tiny-a-t1"
    assert inc["from_scratch"]["kind"] == "forecast" and inc["from_scratch"]["basis"].startswith("forecast: ")
    # the expanded data is twice the earlier data: the forecast is about twice the earlier run's cost
    assert 1.5 < inc["from_scratch_cost"]["train_flops"] / first["cost"]["train_flops"] < 2.5
    assert (
        inc["schedule"]["new_rows"] + inc["schedule"]["earlier_rows"]
        == len(again.dataset["label_names"]) * 0 + (again.dataset["splits"]["train"]["rows"])
    )
    [diff] = inc["differences"]
    assert diff["against"] == "tiny-a-earlier" and diff["low"] <= diff["difference"] <= diff["high"]
    leaked = again.dataset["splits"]["validation"]["rows"] - diff["n"]
    assert leaked > 0 and any(f"{leaked} validation rows" in n for n in inc["notes"])
    md = (tmp_path / "run2" / "report.md").read_text()
    assert "minus tiny-a-earlier" in md and "forecast: " in md

    def no_training(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a rerun must read finished runs back from the ledger")

    monkeypatch.setattr(incremental_mod, "train_run", no_training)
    rerun = advise(config, from_run=earlier)
    assert [r.run_id for r in rerun.runs] == ids and rerun.recommendation == "tiny-a-c1"


def test_compare_scratch_measures_the_same_rung_from_its_checkpoint_on_the_same_data(
    tmp_path: Path, earlier: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expanded = write_csv(tmp_path / "expanded.csv", _rows(200, 0, "a") + _rows(200, 1, "b"))
    args = ["--data", str(expanded), "--from", str(earlier), "--out", str(tmp_path / "run2"), "--compare-scratch"]
    code = main([*args, "--target", "accuracy=0.75", *[a for o in FAST for a in ("--set", o)]])
    assert code == 0
    report = json.loads((tmp_path / "run2" / "report.json").read_text())
    inc = report["details"]["incremental"]
    assert inc["from_scratch"]["kind"] == "measured"
    scratch = next(r for r in report["runs"] if r["run_id"] == "tiny-a-scratch")
    # the rung from its checkpoint, trained with the earlier run's winning settings
    assert scratch["candidate"]["kind"] == "finetune"
    assert scratch["hyperparameters"]["epochs"] == _earlier_hp(earlier)["epochs"]
    assert inc["from_scratch_cost"]["train_flops"] == scratch["cost"]["train_flops"]
    # one epoch on the same rows against two: continuing spent well under the from-scratch FLOPs
    assert inc["flops_ratio"] < 0.8
    assert [d["against"] for d in inc["differences"]] == ["tiny-a-scratch", "tiny-a-earlier"]


def test_new_labels_are_an_error_unless_the_head_is_extended(tmp_path: Path, earlier: Path) -> None:
    rows = _rows(150, 2, "c")
    rows = [(t, "mixed" if i % 3 == 0 else y) for i, (t, y) in enumerate(rows)]
    with pytest.raises(DataError, match="labels the earlier model does not know: mixed.*--extend-head"):
        advise(_from_config(tmp_path, rows), from_run=earlier)
    assert not (tmp_path / "run2").exists()
    again = advise(_from_config(tmp_path, rows, "incremental.extend_head=true"), from_run=earlier)
    run = again.run("tiny-a-c1")
    assert run.status == "ok" and any("head was extended" in n for n in again.details["incremental"]["notes"])
    assert again.dataset["label_names"] == ("mixed", "neg", "pos")  # a record holds tuples, not lists


def test_a_baseline_recommendation_is_refitted_on_the_expanded_data(tmp_path: Path, ladder: Path) -> None:
    first = write_csv(tmp_path / "first.csv", _rows(120, 0, "a"))
    assert advise(_config(tmp_path, ladder, first, floor=0.75)).recommendation == "baseline"
    again = advise(_from_config(tmp_path, _rows(200, 1, "b")), from_run=tmp_path / "run")
    assert again.recommendation == "baseline" and again.runs == ()
    assert "refitted on the expanded data" in again.stop_reason


def test_from_stops_before_a_continuation_that_would_break_the_budget(tmp_path: Path, earlier: Path) -> None:
    config = _from_config(tmp_path, _rows(120, 1, "b"), "criteria.budget_pflops=1e-12")
    again = advise(config, from_run=earlier)
    assert [r.run_id for r in again.runs] == ["tiny-a-earlier"]
    assert "stopped before tiny-a-c1" in again.stop_reason and "compute budget" in again.stop_reason
    assert "the climb was not resumed: the budget" in again.stop_reason and again.outcome == "budget"


def test_from_leaves_room_for_judging_a_continuation_the_budget_stops(
    tmp_path: Path, earlier: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from advisor.climb.budget import BudgetCallback, evaluation_reserve

    watches: list[BudgetCallback] = []
    real = incremental_mod.train_run

    def watched(*args, **kwargs):  # type: ignore[no-untyped-def]
        watches.extend(cb for cb in kwargs.get("extra_callbacks", ()) if isinstance(cb, BudgetCallback))
        return real(*args, **kwargs)

    monkeypatch.setattr(incremental_mod, "train_run", watched)
    # the gate before a continuation (tested above) would refuse it outright: let it start, to be stopped inside
    monkeypatch.setattr(continuing_mod, "budget_refuses", lambda *_a: None)
    rows = _rows(200, 0, "a") + _rows(200, 1, "b")
    never = ["criteria.floor=0.99", "tuning.trials_per_rung=1"]  # no continuation passes: nothing is test-scored
    free = advise(_from_config(tmp_path, rows, *never, f"output.out={tmp_path / 'free'}"), from_run=earlier)
    c1 = free.run("tiny-a-c1")
    assert c1.status == "ok"
    judged_earlier = free.run("tiny-a-earlier").cost.flops  # one measured validation pass of this model
    budget = (free.total_cost.flops - 0.5 * c1.cost.flops) / 1e15
    watches.clear()
    capped = advise(
        _from_config(tmp_path, rows, *never, f"output.out={tmp_path / 'capped'}", f"criteria.budget_pflops={budget}"),
        from_run=earlier,
    )
    # the watch reserved the forecast of judging a stopped run: the Trainer's evaluation on the sample
    # at the stop and one pass over all validation rows (about the pass measured above)
    rows_sampled = build_config().train.eval_rows
    _, judging = evaluation_reserve(judged_earlier, len(c1.val_predictions), rows_sampled)
    assert len(c1.val_predictions) > rows_sampled  # the sample is in play here
    assert watches and 0.8 * judging <= watches[0].judging_flops <= 1.05 * judging
    stopped = capped.run("tiny-a-c1")
    assert stopped.status == "budget" and stopped.metrics  # stopped inside, then judged
    assert capped.total_cost.flops <= 1.05 * budget * 1e15


@pytest.mark.parametrize("budget_name", ["seconds", "kwh"])
def test_from_a_seconds_or_kwh_budget_stops_the_continuation_inside_the_budget(
    tmp_path: Path, earlier: Path, monkeypatch: pytest.MonkeyPatch, work_clock: FakeClock, budget_name: str
) -> None:
    # the gate before a continuation would refuse it outright: let it start, to be stopped inside
    monkeypatch.setattr(continuing_mod, "budget_refuses", lambda *_a: None)
    rows = _rows(200, 0, "a") + _rows(200, 1, "b")
    # every step one second of the fake clock (work_clock): two searches spend the same to the step
    energy = f"metering.codecarbon={'true' if budget_name == 'kwh' else 'false'}"
    never = ["criteria.floor=0.99", "tuning.trials_per_rung=1", energy]

    def spent(cost: Cost) -> float:
        return cost.wall_s if budget_name == "seconds" else cost.energy_kwh

    free = advise(_from_config(tmp_path, rows, *never, f"output.out={tmp_path / 'free'}"), from_run=earlier)
    c1 = free.run("tiny-a-c1")
    assert c1.status == "ok" and spent(c1.cost) > 0
    budget = spent(free.total_cost) - 0.5 * spent(c1.cost)
    capped = advise(
        _from_config(
            tmp_path, rows, *never, f"output.out={tmp_path / 'capped'}", f"criteria.budget_{budget_name}={budget}"
        ),
        from_run=earlier,
    )
    stopped = capped.run("tiny-a-c1")
    assert stopped.status == "budget" and "budget" in (stopped.message or ""), capped.stop_reason
    assert stopped.metrics and 0 < stopped.details["steps"] < c1.details["steps"]  # stopped inside, then judged
    assert capped.outcome == "budget"
    assert spent(capped.total_cost) <= budget  # stopped before the step that would cross it


def test_from_killed_mid_continuation_resumes_without_redoing_finished_work(
    tmp_path: Path, earlier: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_crash_safety import _killed_fork, _run_ids

    expanded = write_csv(tmp_path / "expanded.csv", _rows(120, 1, "b"))
    out = tmp_path / "run2"
    argv = ["--data", str(expanded), "--from", str(earlier), "--out", str(out), "--target", "accuracy=0.75"]
    argv += [a for o in FAST for a in ("--set", o)]
    assert _killed_fork(argv, "train:tiny-a-c1") == -signal.SIGKILL  # at c1's first evaluation
    assert _run_ids(out) == ["baseline", "tiny-a-earlier"]
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "tiny-a-earlier: read back from the ledger" in err and "fitting TF-IDF" not in err
    assert err.count("tiny-a-c1: fine-tuning") == 1
    assert _run_ids(out) == ["baseline", "tiny-a-earlier", "tiny-a-c1"]


def test_the_from_flags_land_in_the_incremental_config() -> None:
    from advisor.cli import _extra, _parser

    flags = _parser().parse_args(["--data", "x.csv", "--from", "r", "--extend-head", "--compare-scratch"])
    inc = build_config(extra=_extra(flags)).incremental
    assert inc.extend_head and inc.compare_scratch
    plain = build_config(extra=_extra(_parser().parse_args(["--data", "x.csv"]))).incremental
    assert not plain.extend_head and not plain.compare_scratch and plain.resume_climb
    off = _parser().parse_args(["--data", "x.csv", "--from", "r", "--no-resume-climb"])
    assert build_config(extra=_extra(off)).incremental.resume_climb is False
