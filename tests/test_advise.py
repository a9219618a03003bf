"""End-to-end climbs on tiny models: stop at the first passing rung, resume, report, exit codes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import advisor.climb.executor as climb_mod
from advisor.advise import advise
from advisor.cli import main
from advisor.climb.tuning import default_trial, probe_trial
from advisor.config.settings import build_config
from advisor.types import Cost
from distill.compact import distil_run
from tests.conftest import make_tiny_model, synthetic_rows, tiny_rung, write_csv, write_ladder

# tiny random models that learn the keyword task in a few seconds (a high learning rate): the floors
# below are far above chance (0.5), so a test passes only when training really learned
FAST = [
    "train.epochs=6",
    "train.learning_rate=5e-3",
    "tuning.lr_max=1e-2",
    "tuning.epochs_max=8",
    "train.batch_size=16",
    "train.freeze_embeddings=false",
    "metering.codecarbon=false",
    "rules.enabled=false",
    "ladder.probes=false",  # these tests are about fine-tune rungs (probes: tests/test_probe.py)
]


@pytest.fixture
def ladder(tmp_path: Path) -> Path:
    a = make_tiny_model(tmp_path / "tiny-a", seed=0, layers=1, hidden=32)
    b = make_tiny_model(tmp_path / "tiny-b", seed=1, layers=2, hidden=32)
    rungs = [
        tiny_rung(a, "tiny-a", description="1 layer"),
        tiny_rung(b, "tiny-b", layers=2, params_total=20_000, params_non_embedding=18_000, description="2 layers"),
    ]
    return write_ladder(tmp_path / "ladder.yaml", rungs)


def _config(tmp_path: Path, ladder: Path, data: Path, floor: float, extra: list[str] = ()):  # type: ignore[assignment]
    return build_config(
        overrides=[
            *FAST,
            f"ladder.name={ladder}",
            f"data.source={data}",
            f"criteria.floor={floor}",
            f"output.out={tmp_path / 'run'}",
            "tuning.trials_per_rung=2",
            *extra,
        ]
    )


def test_climb_stops_at_the_first_rung_that_passes_and_rerun_resumes(
    tmp_path: Path, ladder: Path, weak_baseline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_csv(tmp_path / "data.csv", synthetic_rows(200))
    config = _config(tmp_path, ladder, data, floor=0.75, extra=["metering.codecarbon=true"])
    report = advise(config)
    run_dir = tmp_path / "run"
    assert report.recommendation == "tiny-a-t1", report.stop_reason
    assert report.verdicts["baseline"].passed is False
    assert [r.run_id for r in report.runs] == ["tiny-a-t1"]  # tiny-b never trained
    assert "larger rungs were not trained" in report.stop_reason
    rec = report.recommended
    assert rec is not None and rec.test_metrics["accuracy"] >= 0.75
    # the verdict rests on the interval: its lower bound clears the floor, on the validation rows
    verdict = report.verdicts["tiny-a-t1"]
    assert verdict.state == "pass" and verdict.interval is not None and verdict.interval["low"] >= 0.75
    assert set(rec.intervals) == {"validation", "test"} and rec.intervals["test"]["accuracy"]["n"] > 0
    assert rec.cost.train_flops > 0 and rec.cost.provenance["flops"].startswith("analytic")
    # the final test pass is counted too: forward FLOPs of the test split, in the report's total
    test_cost = Cost.from_dict(rec.details["test_cost"])
    assert test_cost.eval_flops > 0 and test_cost.train_flops == 0
    assert report.total_cost.flops >= rec.cost.flops + test_cost.flops
    # no RAPL counters on CI machines: codecarbon's figures are labelled estimated, never invented as measured
    assert rec.cost.energy_kwh > 0 and rec.cost.provenance["energy"] in ("estimated", "measured")
    # everything is in the run directory
    doc = json.loads((run_dir / "report.json").read_text())
    assert doc["recommendation"]["run_id"] == "tiny-a-t1"
    for name in (
        "report.md",
        "report.html",
        "config.yaml",
        "ledger.sqlite",
        "model/config.json",
        "model/model.safetensors",
        "model/README.md",
        "model/labels.json",
    ):
        assert (run_dir / name).exists(), name
    card = (run_dir / "model" / "README.md").read_text()
    assert "co2_eq_emissions" in card and "model-index" in card

    # a rerun reads every finished run back instead of training again
    def no_training(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(climb_mod, "train_run", no_training)
    monkeypatch.setattr(climb_mod, "fit_baseline", no_training)
    again = advise(config)
    assert again.recommendation == report.recommendation
    assert again.run("tiny-a-t1").metrics == report.run("tiny-a-t1").metrics


def test_when_no_rung_passes_the_report_says_which_criterion_came_closest(
    tmp_path: Path, ladder: Path, weak_baseline: None
) -> None:
    data = write_csv(tmp_path / "data.csv", synthetic_rows(120))
    config = _config(
        tmp_path,
        ladder,
        data,
        floor=0.75,
        extra=["criteria.max_params=5", "tuning.trials_per_rung=1", "train.epochs=1", "ladder.distil_on_ceiling=false"],
    )
    report = advise(config)
    assert report.recommendation is None
    assert [r.candidate.name for r in report.runs] == ["tiny-a", "tiny-b"]
    assert "closest" in report.stop_reason
    assert all("params" in " ".join(v.failed) for k, v in report.verdicts.items() if k != "baseline")
    assert not (tmp_path / "run" / "model").exists()
    # checkpoints nobody needs are deleted, and the report says how much that freed; the run that came
    # closest keeps its model, since it may be the one the user wants
    closest = report.closest
    assert closest in ("tiny-a-t1", "tiny-b-t1")
    assert [p.parent.name for p in (tmp_path / "run" / "runs").glob("tiny-*/model")] == [closest]
    assert report.details["disk_freed_mb"] > 0


def test_second_trial_of_the_first_rung_is_the_lr_probe_read_off_the_first(
    tmp_path: Path, ladder: Path, weak_baseline: None
) -> None:
    data = write_csv(tmp_path / "data.csv", synthetic_rows(120))
    config = _config(tmp_path, ladder, data, floor=0.99, extra=["train.epochs=1", "ladder.rungs=[tiny-a]"])
    report = advise(config)
    first, second = report.run("tiny-a-t1"), report.run("tiny-a-t2")
    assert first.details["trial_origin"] == "default"
    losses = [h.loss for h in first.evaluations]
    expected = probe_trial(config, default_trial(config), losses, ok=first.status == "ok")
    assert expected is not None
    assert second.details["trial_origin"] == expected[1]
    assert second.hyperparameters["learning_rate"] == pytest.approx(expected[0]["learning_rate"])
    assert second.hyperparameters["learning_rate"] != pytest.approx(first.hyperparameters["learning_rate"])


def test_a_run_that_failed_is_trained_again_on_rerun(
    tmp_path: Path, ladder: Path, weak_baseline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_csv(tmp_path / "data.csv", synthetic_rows(120))
    config = _config(tmp_path, ladder, data, floor=0.75, extra=["ladder.rungs=[tiny-a]", "tuning.trials_per_rung=1"])
    real = climb_mod.train_run

    def crash(*args, **kwargs):  # type: ignore[no-untyped-def]
        run = real(*args, **kwargs)
        return dataclasses.replace(
            run, status="failed", metrics={}, val_predictions=(), message="training raised MemoryError"
        )

    monkeypatch.setattr(climb_mod, "train_run", crash)
    first = advise(config)
    assert first.run("tiny-a-t1").status == "failed" and first.recommendation is None
    monkeypatch.setattr(climb_mod, "train_run", real)
    again = advise(config)
    assert again.run("tiny-a-t1").status == "ok"
    assert again.run("tiny-a-t1").details["trial_origin"] == "default"


def test_baseline_that_passes_is_the_recommendation_and_nothing_is_trained(
    tmp_path: Path, ladder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_csv(tmp_path / "data.csv", synthetic_rows(120))

    def no_training(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("a transformer was trained although the baseline passed")

    monkeypatch.setattr(climb_mod, "train_run", no_training)
    report = advise(_config(tmp_path, ladder, data, floor=0.7))  # its CV interval on these 120 rows clears 0.7
    assert report.recommendation == "baseline"
    assert report.runs == ()
    assert (tmp_path / "run" / "model" / "model.skops").is_file()
    assert (tmp_path / "run" / "model" / "README.md").is_file()


def test_cli_exit_codes_and_one_line_errors(tmp_path: Path, ladder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_csv(tmp_path / "data.csv", synthetic_rows(120))
    out = tmp_path / "cli-run"
    code = main(
        [
            "--data",
            str(data),
            "--ladder",
            str(ladder),
            "--target",
            "accuracy=0.7",
            "--out",
            str(out),
            "--set",
            "metering.codecarbon=false",
        ]
    )
    assert code == 0
    assert "answer: baseline (the TF-IDF baseline) meets accuracy >= 0.7" in capsys.readouterr().out
    code = main(["--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2
    error_lines = [line for line in err.splitlines() if line.startswith("advise: error: ")]
    assert len(error_lines) == 1 and "missing.csv" in error_lines[0]
    assert not (tmp_path / "x").exists()  # bad input writes nothing
    code = main(["--target", "accuracy=1.2", "--out", str(tmp_path / "y")])
    assert code == 2 and "between 0 and 1" in capsys.readouterr().err


def test_small_experiment_skips_rungs_whose_optimistic_forecast_misses_the_floor(
    tmp_path: Path, ladder: Path, weak_baseline: None
) -> None:
    data = write_csv(tmp_path / "data.csv", synthetic_rows(160))
    # one epoch on a quarter of the rows teaches a tiny model nothing: the forecast cannot reach 0.99
    config = _config(tmp_path, ladder, data, floor=0.99, extra=["tuning.small_fraction=0.25", "train.epochs=1"])
    report = advise(config)
    assert report.recommendation is None
    ids = [r.run_id for r in report.runs]
    assert ids == ["tiny-a-small", "tiny-a-skipped", "tiny-b-small", "tiny-b-skipped"]
    skipped = report.run("tiny-a-skipped")
    assert skipped.status == "skipped" and "misses the floor 0.99" in (skipped.message or "")
    assert skipped.details["forecast"]["optimistic"] < 0.99
    assert report.run("tiny-a-small").details["train_fraction"] == 0.25


def _too_big_config(tmp_path: Path, ladder: Path, extra: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    """tiny-b meets the floor but not max_params (set between the two rungs' sizes): the climb distils it."""
    from advisor.models.loading import count_parameters, load_for_classification

    data = write_csv(tmp_path / "data.csv", synthetic_rows(160))
    two_layers, _ = load_for_classification(str(tmp_path / "tiny-b"), ["neg", "pos"])
    one_layer, _ = load_for_classification(str(tmp_path / "tiny-a"), ["neg", "pos"])
    ceiling = (count_parameters(two_layers)[0] + count_parameters(one_layer)[0]) // 2
    rungs = ["ladder.rungs=[tiny-b]", f"criteria.max_params={ceiling}", "tuning.trials_per_rung=1"]
    return _config(tmp_path, ladder, data, floor=0.75, extra=[*rungs, *extra])


def test_a_too_big_rung_whose_teacher_is_not_ahead_gives_the_student_trained_without_it(
    tmp_path: Path, ladder: Path, weak_baseline: None
) -> None:
    # on the keyword task the half-depth student learns alone what the teacher knows: the decide-first
    # check finds no evidence for the teacher, so no distilled student is paid for
    report = advise(_too_big_config(tmp_path, ladder), distiller=distil_run)
    assert [r.run_id for r in report.runs] == ["tiny-b-t1", "tiny-b-t1-student"]
    assert report.verdicts["tiny-b-t1"].failed == ("max_params",)
    student = report.run("tiny-b-t1-student")
    assert student.candidate.kind == "finetune" and student.candidate.layers == 1
    assert student.candidate.parent_run == "tiny-b-t1"
    assert student.details["student_path"] == "control"
    assert student.details["teacher_vs_control"]["verdict"] != "teacher_better"
    assert "train the small student directly" in student.details["teacher_vs_control_text"]
    assert "teacher_logits" not in student.details["distill_phases"]  # the teacher's logits were never computed
    assert set(student.details["distill_phases"]) >= {"teacher", "control"}
    assert report.recommendation == "tiny-b-t1-student", report.stop_reason
    assert "its student (trained without the teacher) meets every criterion" in report.stop_reason
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    # the report says why the cheaper student was kept, and its retention reaches report.json
    assert "kept the control student" in (tmp_path / "run" / "report.md").read_text()
    recorded = json.loads((tmp_path / "run" / "report.json").read_text())
    [entry] = [r for r in recorded["runs"] if r["run_id"] == "tiny-b-t1-student"]
    assert entry["details"]["retention_metric"] == "accuracy"
    assert 0.9 <= entry["details"]["retention"] <= 1.2  # the student kept what the teacher knew


def test_a_student_killed_mid_training_inside_advise_is_resumed_with_its_lost_work_counted(
    tmp_path: Path, ladder: Path, weak_baseline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing
    import os
    import signal

    import torch

    import distill.interrupted

    torch.set_num_threads(1)
    monkeypatch.setattr(distill.interrupted, "SNAPSHOT_EVERY_S", 0.0)  # a snapshot at every step
    config = _too_big_config(tmp_path, ladder)

    def child() -> None:  # killed at the second step of the control student, inside the compaction step
        os.environ["GREENLADDER_FAULT"] = "distill:control-seed0:step2"
        advise(config, distiller=distil_run)

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(timeout=300)
    assert proc.exitcode == -signal.SIGKILL
    report = advise(config, distiller=distil_run)
    assert report.recommendation == "tiny-b-t1-student", report.stop_reason
    student = report.run("tiny-b-t1-student")
    (fact,) = student.details["lost_to_interruption"]
    phases = student.details["distill_phases"]
    # the killed control's work up to its last snapshot is counted, labelled, inside the student's cost
    assert (
        fact["run"] == "control-seed0" and fact["where"].startswith("step 2 of") and phases["lost"]["train_flops"] > 0
    )
    assert student.cost.train_flops == pytest.approx(sum(p["train_flops"] for p in phases.values()))
    # the teacher's scoring, finished before the kill, was read back, not paid again
    assert "teacher" in phases


def test_a_too_big_rung_whose_teacher_is_ahead_is_distilled_with_the_unlabelled_and_augmented_texts(
    tmp_path: Path, ladder: Path, weak_baseline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import distill.pipeline

    real = distill.pipeline.teacher_vs_control

    def teacher_ahead(*args, **kwargs):  # type: ignore[no-untyped-def]
        # tiny models cannot make a teacher that beats its own half: the check's evidence is real,
        # its verdict forced, so what is under test is what the climb does with it
        return dataclasses.replace(real(*args, **kwargs), verdict="teacher_better")

    monkeypatch.setattr(distill.pipeline, "teacher_vs_control", teacher_ahead)
    unlabeled = tmp_path / "more.txt"
    unlabeled.write_text("\n".join(text for text, _ in synthetic_rows(60, seed=7)) + "\n", encoding="utf-8")
    sets = [f"ladder.distil_unlabeled={unlabeled}", "ladder.distil_augment=1"]
    report = advise(_too_big_config(tmp_path, ladder, sets), distiller=distil_run)
    student = report.run("tiny-b-t1-student")
    assert student.candidate.kind == "distilled" and student.candidate.layers == 1
    assert student.details["student_path"] == "distilled" and student.details["unlabeled_rows"] == 60
    # one perturbed copy per labelled text (a copy equal to a text already there is dropped)
    assert 0 < student.details["augmented_rows"] <= report.dataset["splits"]["train"]["rows"]
    assert set(student.details["distill_phases"]) >= {"teacher", "control", "teacher_logits", "distill"}
    assert report.recommendation == "tiny-b-t1-student", report.stop_reason
    assert "its student (distilled) meets every criterion" in report.stop_reason


def test_an_unlabelled_file_that_does_not_exist_is_a_config_error(tmp_path: Path) -> None:
    from advisor.errors import ConfigError

    with pytest.raises(ConfigError, match="ladder.distil_unlabeled must name a file"):
        build_config(overrides=[f"ladder.distil_unlabeled={tmp_path / 'missing.txt'}"])
    with pytest.raises(ConfigError, match="ladder.distil_augment must be a number of copies from 0 to 20"):
        build_config(overrides=["ladder.distil_augment=21"])
