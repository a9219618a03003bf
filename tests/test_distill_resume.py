"""A resumed distillation counts what was spent: the logits pass at the cost that made its cache, the work a
kill lost as lost, and totals that agree with an uninterrupted run plus that lost work.

The kill is real: ``GREENLADDER_FAULT=distill:<run>:step<n>`` makes a forked copy of this process send
itself SIGKILL after the n-th training step of that run (``distill.interrupted``), with the running
cost saved at every step; Ctrl-C is an exception raised from inside the Trainer's step.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
from typing import Any

import pytest

import distill.interrupted
from advisor.verdicts.criteria import fmt_num
from distill.cli import main
from distill.trainer import DistillTrainer
from tests.conftest import make_tiny_model, synthetic_rows, write_csv

# batches of 8: the distilled student takes 11 steps over the 84 training rows
FAST = ["--student-layers", "1", "--epochs", "1", "--lr", "3e-3", "--max-length", "16",
        "--set", "distill.batch_size=8", "--set", "teacher_train.epochs=1", "--set", "compress.latency_repeats=3",
        "--set", "metering.codecarbon=false", "--set", "rules.enabled=false"]  # fmt: skip


def _flops(cost: dict[str, Any]) -> float:
    return cost["train_flops"] + cost["eval_flops"] + cost["inference_flops"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("resume")
    teacher = make_tiny_model(root / "encoder", layers=2)
    data = write_csv(root / "reviews.csv", synthetic_rows(120))
    return ["--teacher", str(teacher), "--data", str(data), *FAST]


@pytest.fixture(scope="module")
def reference(inputs: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An uninterrupted run of the same command."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main([*inputs, "--out", str(out)]) == 0
    return json.loads((out / "distill_report.json").read_text())


def _child(argv: list[str], point: str) -> None:
    os.environ["GREENLADDER_FAULT"] = point
    distill.interrupted.SNAPSHOT_EVERY_S = 0.0  # a snapshot at every step: the kill loses nothing uncounted
    sys.exit(main(argv))


def _killed_fork(argv: list[str], point: str) -> int:
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(argv, point))
    proc.start()
    proc.join(timeout=300)
    assert proc.exitcode is not None, f"the run with GREENLADDER_FAULT={point} did not end"
    return proc.exitcode


def _check_accounted(doc: dict[str, Any], reference: dict[str, Any], steps: int) -> float:
    """The resumed report against the uninterrupted one; returns the lost FLOPs."""
    logits, ref_logits = doc["phases"]["teacher_logits"], reference["phases"]["teacher_logits"]
    assert _flops(logits) == _flops(ref_logits) > 0  # the pass that made the cache, not the cache read
    assert "read from the cache" in doc["phase_notes"]["teacher_logits"]
    (fact,) = doc["lost_to_interruption"]
    assert fact["run"] == "distilled-seed0" and fact["where"] == f"step {steps} of 11"
    lost = _flops(doc["phases"]["lost"])
    student_train = reference["students"][0]["cost"]["train_flops"]
    # the steps it had taken, not the whole student and not nothing (batches differ in length)
    assert 0.5 * steps / 11 * student_train < doc["phases"]["lost"]["train_flops"] < 1.5 * steps / 11 * student_train
    assert _flops(doc["total_cost"]) == pytest.approx(_flops(reference["total_cost"]) + lost, rel=0.01)
    for phase in ("teacher", "control", "distill"):  # every other phase as uninterrupted (FLOPs are exact)
        assert _flops(doc["phases"][phase]) == pytest.approx(_flops(reference["phases"][phase]), rel=1e-9)
    return lost


def test_a_kill_mid_student_is_counted_as_lost_and_the_rerun_matches_an_uninterrupted_run_plus_it(
    inputs, reference, tmp_path, capsys
):
    out = tmp_path / "run"
    argv = [*inputs, "--out", str(out)]
    assert _killed_fork(argv, "distill:distilled-seed0:step4") == -signal.SIGKILL
    assert (out / "inprogress" / "distilled-seed0.json").is_file()
    capsys.readouterr()

    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "distilled-seed0: an earlier run stopped at step 4 of 11" in err and "lost to interruption" in err
    assert "running the teacher" not in err and "control-seed0: read back from the ledger" in err
    assert not list((out / "inprogress").glob("*.json"))
    doc = json.loads((out / "distill_report.json").read_text())
    lost = _check_accounted(doc, reference, 4)
    assert doc["summary"]["student_score"] == reference["summary"]["student_score"]
    # the report and the card say so, with the same total
    assert "| lost to interruption (done again since) |" in (out / "distill_report.md").read_text()
    card = (out / "student" / "README.md").read_text()
    assert f"{fmt_num(_flops(doc['total_cost']) / 1e15)} PFLOPs" in card
    assert f"of which {fmt_num(lost / 1e15)} PFLOPs were lost to an interruption" in card

    # read back again: the lost work is a fact counted once, not once per rerun
    assert main(argv) == 0
    assert json.loads((out / "distill_report.json").read_text())["total_cost"] == doc["total_cost"]


def test_ctrl_c_mid_student_saves_its_whole_cost_and_the_rerun_counts_it(
    inputs, reference, tmp_path, capsys, monkeypatch
):
    real = DistillTrainer.training_step

    def step(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.kd is not None and self.state.global_step == 3:  # the distilled student's 4th step
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    out = tmp_path / "run"
    argv = [*inputs, "--out", str(out)]
    monkeypatch.setattr(DistillTrainer, "training_step", step)
    assert main(argv) == 130
    assert "interrupted; finished runs are in the ledger" in capsys.readouterr().err
    saved = json.loads((out / "inprogress" / "distilled-seed0.json").read_text())
    assert saved["step"] == 3 and saved["cost"]["train_flops"] > 0

    monkeypatch.setattr(DistillTrainer, "training_step", real)
    assert main(argv) == 0
    assert "distilled-seed0: an earlier run stopped at step 3 of 11" in capsys.readouterr().err
    doc = json.loads((out / "distill_report.json").read_text())
    _check_accounted(doc, reference, 3)
    assert doc["phases"]["lost"]["wall_s"] == pytest.approx(saved["cost"]["wall_s"])
