from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from advisor.errors import RunDirError
from advisor.runkey import RunKey
from advisor.store.ledger import Ledger, locked
from advisor.types import Candidate, Cost, RunResult


def _run(run_id: str, acc: float = 0.8) -> RunResult:
    return RunResult(
        RunKey.from_legacy_id(run_id),
        Candidate("tiny", "finetune", "x"),
        {"learning_rate": 1e-4},
        "ok",
        {"accuracy": acc},
        Cost(wall_s=1.0),
    )


def test_runs_are_read_back_after_reopening(tmp_path: Path) -> None:
    with Ledger(tmp_path) as led:
        led.add(_run("tiny-t1"))
        led.add(_run("tiny-t2", 0.9))
        led.set_meta("k", {"x": 1})
    with Ledger(tmp_path) as led:
        assert [r.run_id for r in led.all()] == ["tiny-t1", "tiny-t2"]
        assert led.get("tiny-t2") == _run("tiny-t2", 0.9)
        assert led.get("missing") is None
        assert led.get_meta("k") == {"x": 1}


def test_records_are_write_once(tmp_path: Path) -> None:
    with Ledger(tmp_path) as led:
        led.add(_run("tiny-t1"))
        with pytest.raises(ValueError, match="write-once"):
            led.add(_run("tiny-t1", 0.1))
        assert led.get("tiny-t1").metrics["accuracy"] == 0.8


def test_a_failed_run_is_offered_again_and_its_retry_replaces_it(tmp_path: Path) -> None:
    failed = RunResult(
        RunKey("trial", "tiny", 1),
        Candidate("tiny", "finetune", "x"),
        {},
        "failed",
        {},
        Cost(),
        message="out of memory",
    )
    with Ledger(tmp_path) as led:
        led.add(failed)
        assert led.get("tiny-t1") == failed and led.finished("tiny-t1") is None
        led.add(_run("tiny-t1", 0.7))
        assert led.finished("tiny-t1") == _run("tiny-t1", 0.7)
        assert [r.run_id for r in led.all()] == ["tiny-t1"]
        with pytest.raises(ValueError, match="write-once"):  # a finished run still is write-once
            led.add(_run("tiny-t1", 0.1))


def test_a_second_process_on_the_same_run_dir_is_refused(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from advisor.store.ledger import locked\n"
        "from advisor.errors import RunDirError\n"
        "try:\n    with locked(Path(sys.argv[1])): pass\nexcept RunDirError as e:\n    print(e); sys.exit(7)\n"
    )
    with locked(tmp_path):
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 7
    assert "Another advise process is using" in proc.stdout
    with locked(tmp_path):  # released: usable again
        pass


def test_corrupt_ledger_gives_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "ledger.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(RunDirError, match="cannot be opened"):
        Ledger(tmp_path)


# -- work lost to interruption ----------------------------------------------------------------------


def test_the_latest_checkpoint_of_an_unrecorded_run_is_booked_as_lost_once(tmp_path: Path) -> None:
    with Ledger(tmp_path) as led:
        led.checkpoint("tiny-t1", Cost(wall_s=1.0, train_flops=10.0), step=1)
        led.checkpoint("tiny-t1", Cost(wall_s=2.0, train_flops=20.0), step=2)  # the latest wins
        led.checkpoint("tiny-t2", Cost(wall_s=5.0), step=0)
        led.add(_run("tiny-t2"))  # recorded: its checkpoint is cleared with it
    with Ledger(tmp_path) as led:  # the next advise, after the kill
        lost = led.settle_interrupted()
        assert [(x.run_id, x.step, x.cost.train_flops) for x in lost] == [("tiny-t1", 2, 20.0)]
        assert led.settle_interrupted() == []  # settled once
        led.checkpoint("tiny-t1", Cost(wall_s=3.0, train_flops=30.0), step=3)  # killed again on the retry
    with Ledger(tmp_path) as led:
        led.settle_interrupted()
        assert [(x.run_id, x.step, x.cost.wall_s) for x in led.lost()] == [("tiny-t1", 2, 2.0), ("tiny-t1", 3, 3.0)]


def test_a_run_killed_while_its_record_is_written_is_booked_with_its_whole_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import advisor.store.ledger as ledger_mod

    def die(name: str) -> None:
        if name == "ledger:tiny-t1":
            raise KeyboardInterrupt  # stands in for the kill: the transaction rolls back

    monkeypatch.setattr(ledger_mod, "fault_point", die)
    run = RunResult(
        RunKey("trial", "tiny", 1),
        Candidate("tiny", "finetune", "x"),
        {},
        "ok",
        {"accuracy": 0.8},
        Cost(wall_s=4.0, train_flops=7.0),
    )
    with Ledger(tmp_path) as led:
        led.checkpoint("tiny-t1", Cost(wall_s=1.0, train_flops=2.0), step=5)
        with pytest.raises(KeyboardInterrupt):
            led.add(run)
        assert led.get("tiny-t1") is None
        (lost,) = led.settle_interrupted()
    assert (lost.step, lost.cost) == (None, run.cost)  # the finished run's cost, not the mid-training one
