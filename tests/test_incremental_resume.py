"""``advise --from``: when the continued model fails on the expanded data, the climb resumes above its rung."""

from __future__ import annotations

import dataclasses
import json
import signal
from pathlib import Path

import pytest
import yaml

import advisor.climb.executor as climb_mod
import advisor.incremental.executor as incremental_mod
from advisor.advise import advise
from advisor.cli import main
from advisor.config.settings import build_config
from advisor.data.task import column
from advisor.incremental import resumption
from advisor.outcome import Report
from advisor.runkey import RunKey
from advisor.types import Candidate, Cost, RunResult
from advisor.verdicts.criteria import compute_metrics
from advisor.verdicts.stats import bonferroni
from tests.conftest import copy_run_dir, make_tiny_model, weaken_baseline, write_csv
from tests.test_advise import FAST, _config
from tests.test_incremental import _from_config, _rows


def _rung(name: str, folder: Path, layers: int, optional: bool = False) -> dict:
    return {
        "name": name,
        "source": str(folder),
        "description": f"{layers} layers",
        "params_total": 10_000 * layers,
        "params_non_embedding": 9_000 * layers,
        "layers": layers,
        "hidden": 32,
        **({"optional": True} if optional else {}),
    }


@pytest.fixture(scope="module")
def earlier_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An earlier run directory whose recommendation is tiny-a on 200 rows (one climb per module); its
    ladder has two tiny random BERTs, tiny-b the rung above tiny-a."""
    root = tmp_path_factory.mktemp("earlier")
    a = make_tiny_model(root / "tiny-a", seed=0, layers=1, hidden=32)
    b = make_tiny_model(root / "tiny-b", seed=1, layers=2, hidden=32)
    ladder = root / "ladder.yaml"
    ladder.write_text(yaml.safe_dump({"rungs": [_rung("tiny-a", a, 1), _rung("tiny-b", b, 2)]}))
    first = write_csv(root / "first.csv", _rows(200, 0, "a"))
    with pytest.MonkeyPatch.context() as mp:
        weaken_baseline(mp)
        report = advise(_config(root, ladder, first, floor=0.75))
    assert report.recommendation == "tiny-a-t1", report.stop_reason
    return root / "run"


@pytest.fixture
def earlier(tmp_path: Path, earlier_once: Path, weak_baseline: None) -> Path:
    """This test's copy of the earlier run directory; the baseline stays weak in the test's own climbs."""
    return copy_run_dir(earlier_once, tmp_path / "run")


@pytest.fixture
def weak_continuation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every model ``--from`` judges or trains (the earlier one, the continuation, from-scratch)
    really runs, then is made wrong on every validation row, as ``weak_baseline`` does: the
    continuation fails the floor however well the tiny model learned, and the climb must resume."""
    real_train, real_judge = incremental_mod.train_run, incremental_mod.judge_earlier

    def wrong(run, data):  # type: ignore[no-untyped-def]
        if not run.metrics:
            return run
        labels = column(data.validation, "label")
        bad = [(y + 1) % len(data.label_names) for y in labels]
        return dataclasses.replace(
            run, metrics=compute_metrics(labels, bad, data.label_names), val_predictions=tuple(bad)
        )

    def train(candidate, source, data, *args, **kwargs):  # type: ignore[no-untyped-def]
        return wrong(real_train(candidate, source, data, *args, **kwargs), data)

    def judge(name, source, from_dir, data, config):  # type: ignore[no-untyped-def]
        return wrong(real_judge(name, source, from_dir, data, config), data)

    monkeypatch.setattr(incremental_mod, "train_run", train)
    monkeypatch.setattr(incremental_mod, "judge_earlier", judge)


def _argv(tmp_path: Path, earlier: Path, *extra: str) -> list[str]:
    expanded = write_csv(tmp_path / "expanded.csv", _rows(200, 0, "a") + _rows(200, 1, "b"))
    argv = ["--data", str(expanded), "--from", str(earlier), "--out", str(tmp_path / "run2")]
    return [*argv, "--target", "accuracy=0.75", *[a for o in FAST for a in ("--set", o)], *extra]


# ----------------------------------------------------------------------------- planning (nothing trained)


def test_the_plan_climbs_the_rungs_above_the_earlier_recommendation_of_the_earlier_ladder(tmp_path: Path) -> None:
    folder = make_tiny_model(tmp_path / "m")
    rungs = [
        _rung("r1", folder, 1),
        _rung("r2", folder, 2),
        _rung("big", folder, 4, optional=True),
        _rung("r3", folder, 3),
    ]
    path = tmp_path / "ladder.yaml"
    path.write_text(yaml.safe_dump({"rungs": rungs}))
    config = build_config(overrides=["tuning.trials_per_rung=2", "ladder.distil_on_ceiling=false"])

    def prev(name: str, kind: str = "finetune", chosen: list[str] | None = None) -> Report:
        """The earlier run's report as --from reads it back: its recommendation and its ladder."""
        key = RunKey("baseline") if kind == "baseline" else RunKey("trial", name, 1)
        rec = RunResult(key, Candidate(name, kind, "x"), {}, "ok", {"accuracy": 0.9}, Cost())
        return Report.from_json(
            {
                "runs": [rec.to_dict()],
                "recommendation": {"run_id": rec.run_id},
                "config": {"ladder": {"name": str(path), "rungs": chosen or []}},
            }
        )

    above_r1 = resumption.plan(config, prev("r1"))
    assert above_r1.rungs == ("r2", "r3") and above_r1.why_not == ""  # the optional rung is not climbed
    assert above_r1.config is not None and above_r1.config.ladder.name == str(path)
    assert above_r1.candidates == 2 * 2  # two rungs of two trials each (no distillation)
    assert resumption.plan(config, prev("baseline", "baseline")).rungs == ("r1", "r2", "r3")
    assert resumption.plan(config, prev("r1", chosen=["r1", "big"])).rungs == ("big",)  # the earlier selection
    top = resumption.plan(config, prev("r3"))
    assert top.config is None and "r3 is the top rung" in top.why_not
    student = resumption.plan(config, prev("r1-t1-student", "distilled"))
    assert student.config is None and "not a rung of the ladder" in student.why_not
    off = dataclasses.replace(config, incremental=dataclasses.replace(config.incremental, resume_climb=False))
    assert resumption.plan(off, prev("r1")).config is None
    assert "--no-resume-climb" in resumption.plan(off, prev("r1")).why_not


# ----------------------------------------------------------------------------- resuming


def test_a_failed_continuation_resumes_the_climb_on_the_rung_above_and_a_rerun_trains_nothing(
    tmp_path: Path, earlier: Path, weak_continuation: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _from_config(tmp_path, _rows(200, 0, "a") + _rows(200, 1, "b"))
    report = advise(config, from_run=earlier)
    ids = [r.run_id for r in report.runs]
    assert ids == ["tiny-a-earlier", "tiny-a-c1", "tiny-a-c2", "tiny-b-t1"], ids
    assert report.recommendation == "tiny-b-t1", report.stop_reason
    assert "tiny-a continued from" in report.stop_reason and "fails" in report.stop_reason
    assert "the climb resumed above tiny-a (tiny-b)" in report.stop_reason
    assert "tiny-b meets every criterion" in report.stop_reason
    assert report.outcome == "met"
    resumed = report.details["incremental"]["resumed_climb"]
    assert resumed == {
        "after": "tiny-a",
        "rungs": ("tiny-b",),
        "runs": ("tiny-b-t1",),
        "recommendation": "tiny-b-t1",
        "outcome": "met",
    }
    b = report.run("tiny-b-t1")
    # the rung above, from its pre-trained checkpoint, on the expanded data, started from the
    # earlier run's winning settings on the rung below
    assert b.candidate.kind == "finetune" and b.train_examples == report.dataset["splits"]["train"]["rows"]
    earlier_doc = json.loads((earlier / "report.json").read_text())
    assert b.hyperparameters["learning_rate"] == earlier_doc["runs"][0]["hyperparameters"]["learning_rate"]
    # one Bonferroni family for both parts: baseline, earlier model, 2 continuation trials,
    # from-scratch, tiny-b's 2 trials and one student
    assert report.details["decision_level"] == pytest.approx(bonferroni(config.criteria.confidence, 1 + 4 + 3))
    run2 = tmp_path / "run2"
    md = (run2 / "report.md").read_text()
    assert "the climb resumed on tiny-b" in md and "recommended tiny-b-t1" in md
    assert json.loads((run2 / "model" / "config.json").read_text())["num_hidden_layers"] == 2  # tiny-b published

    def no_training(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a rerun must read finished runs back from the ledger")

    monkeypatch.setattr(incremental_mod, "train_run", no_training)
    monkeypatch.setattr(climb_mod, "train_run", no_training)
    rerun = advise(config, from_run=earlier)
    assert [r.run_id for r in rerun.runs] == ids and rerun.recommendation == "tiny-b-t1"


def test_no_resume_climb_stops_with_exit_1_and_a_rerun_without_it_climbs_within_the_budget_left(
    tmp_path: Path, earlier: Path, weak_continuation: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _argv(tmp_path, earlier)
    assert main([*argv, "--no-resume-climb"]) == 1
    out = capsys.readouterr().out
    assert "answer: no model met accuracy >= 0.75" in out and "--no-resume-climb" in out
    run2 = tmp_path / "run2"
    doc = json.loads((run2 / "report.json").read_text())
    assert [r["run_id"] for r in doc["runs"]] == ["tiny-a-earlier", "tiny-a-c1", "tiny-a-c2"]
    assert "resumed_climb" not in doc["details"]["incremental"]

    # the same command without the flag, with a compute budget 2 % above what the continuation
    # spent: the continuation is read back, and tiny-b's forecast does not fit in what is left
    spent = doc["total_cost"]["train_flops"] + doc["total_cost"]["eval_flops"]
    assert main([*argv, "--budget-pflops", repr(spent * 1.02 / 1e15)]) == 1
    captured = capsys.readouterr()
    assert "tiny-a-c1: fine-tuning" not in captured.err and "tiny-b-t1: fine-tuning" not in captured.err
    doc = json.loads((run2 / "report.json").read_text())
    assert doc["details"]["outcome"] == "budget" and "stopped before tiny-b" in doc["stop_reason"]
    assert "budget: spent" in captured.out and [r["run_id"] for r in doc["runs"]][-1] == "tiny-a-c2"

    # and without a budget it climbs: only tiny-b is trained
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "fine-tuning" in err and err.count("fine-tuning") == err.count("tiny-b-t1: fine-tuning") == 1


def test_a_resumed_climb_killed_mid_rung_resumes_without_retraining_the_continuation(
    tmp_path: Path, earlier: Path, weak_continuation: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_crash_safety import _killed_fork, _run_ids

    argv = _argv(tmp_path, earlier)
    assert _killed_fork(argv, "train:tiny-b-t1") == -signal.SIGKILL  # at tiny-b-t1's first evaluation
    out = tmp_path / "run2"
    assert _run_ids(out) == ["baseline", "tiny-a-earlier", "tiny-a-c1", "tiny-a-c2"]
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    for run_id in ("tiny-a-earlier", "tiny-a-c1", "tiny-a-c2"):
        assert f"{run_id}: read back from the ledger" in err
    assert "tiny-a-c1: fine-tuning" not in err and "fitting TF-IDF" not in err
    assert err.count("tiny-b-t1: fine-tuning") == 1
    assert _run_ids(out) == ["baseline", "tiny-a-earlier", "tiny-a-c1", "tiny-a-c2", "tiny-b-t1"]
