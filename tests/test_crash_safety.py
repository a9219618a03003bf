"""Crash safety: `advise` killed with SIGKILL at any point loses nothing, and a rerun finishes the job.

The kills are deterministic: ``GREENLADDER_FAULT=<point>`` makes the process send itself SIGKILL at
a named point (see ``advisor.faults.fault_point``): after the baseline was fitted but before it was
recorded (``baseline``), at a rung's first mid-training evaluation (``train:<run_id>``), inside the
ledger's write transaction (``ledger:<run_id>``) and half-way through writing a report
(``report:<file>``). SIGKILL leaves no chance to clean up, as a power cut or the OOM killer would.

The fast test forks the test process (already past the slow imports) for each killed run; the slow
one runs the real ``python -m advisor.cli`` in subprocesses end to end.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from advisor.cli import main
from advisor.store.ledger import LOCK_NAME
from advisor.types import RunResult
from tests.conftest import make_tiny_model, synthetic_rows, write_csv

REPO = Path(__file__).resolve().parent.parent
# every run fails max_params, so the climb trains both rungs: two models, a baseline, three ledger records
FAST = [
    "--target",
    "accuracy=0.5",
    "--max-params",
    "5",
    "--set",
    "metering.codecarbon=false",
    "--set",
    "train.epochs=2",
    "--set",
    "train.batch_size=16",
    "--set",
    "train.learning_rate=3e-3",
    "--set",
    "tuning.lr_max=1e-2",
    "--set",
    "train.freeze_embeddings=false",
    "--set",
    "tuning.trials_per_rung=1",
    "--set",
    "rules.enabled=false",
    "--set",
    "ladder.distil_on_ceiling=false",  # no distillation step: the climb alone is under test
    "--set",
    "ladder.probes=false",  # these tests are about fine-tune rungs (probes: tests/test_probe.py)
]
ORDER = ["baseline", "tiny-a-t1", "tiny-b-t1"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("crash")
    rungs = []
    for i, name in enumerate(("tiny-a", "tiny-b")):
        folder = make_tiny_model(root / name, seed=i, layers=i + 1)
        rungs.append(
            {
                "name": name,
                "source": str(folder),
                "description": f"{i + 1} layer(s)",
                "params_total": 10_000 * (i + 1),
                "params_non_embedding": 9_000 * (i + 1),
                "layers": i + 1,
                "hidden": 32,
            }
        )
    ladder = root / "ladder.yaml"
    ladder.write_text(yaml.safe_dump({"rungs": rungs}))
    return write_csv(root / "data.csv", synthetic_rows(120)), ladder


def _argv(inputs: tuple[Path, Path], out: Path) -> list[str]:
    data, ladder = inputs
    return ["--data", str(data), "--ladder", str(ladder), "--out", str(out), *FAST]


@pytest.fixture(scope="module")
def reference(inputs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict]:
    """An uninterrupted run with the same seed: what every interrupted-then-resumed run must reproduce."""
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("reference") / "run"
    code = main(_argv(inputs, out))
    return code, json.loads((out / "report.json").read_text())


def _ledger_rows(run_dir: Path) -> list[tuple[str, str]]:
    """(run_id, record) rows as any reader sees them: opening the file rolls back a crashed transaction."""
    if not (run_dir / "ledger.sqlite").exists():
        return []
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    try:
        return db.execute("SELECT run_id, record FROM runs ORDER BY rowid").fetchall()
    finally:
        db.close()


def _run_ids(run_dir: Path) -> list[str]:
    return [run_id for run_id, _ in _ledger_rows(run_dir)]


def _child(argv: list[str], point: str) -> None:
    os.environ["GREENLADDER_FAULT"] = point
    sys.exit(main(argv))


def _killed_fork(argv: list[str], point: str) -> int:
    """Run `advise` in a forked copy of this process with the fault point set; return its exit code."""
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(argv, point))
    proc.start()
    proc.join(timeout=300)
    assert proc.exitcode is not None, f"the run with GREENLADDER_FAULT={point} did not end"
    return proc.exitcode


def _verdicts(doc: dict) -> dict[str, tuple[bool, list[str], dict]]:
    runs = [doc["baseline"], *doc["runs"]]
    return {r["run_id"]: (r["verdict"]["passed"], r["verdict"]["failed"], r["metrics"]) for r in runs}


def _check_resumed(run_dir: Path, reference: tuple[int, dict], code: int, stderr: str) -> None:
    ref_code, ref_doc = reference
    assert code == ref_code
    for run_id in ORDER:  # every finished run was read back, none was trained again
        assert f"{run_id}: read back from the ledger" in stderr, run_id
    assert "fine-tuning" not in stderr and "fitting TF-IDF" not in stderr
    rows = _ledger_rows(run_dir)
    assert [r[0] for r in rows] == ORDER  # no duplicate, nothing missing
    for _, record in rows:  # each record is whole
        RunResult.from_dict(json.loads(record))
    doc = json.loads((run_dir / "report.json").read_text())
    assert doc["recommendation"] == ref_doc["recommendation"]
    assert _verdicts(doc) == _verdicts(ref_doc)
    assert not list(run_dir.glob(".report.*.tmp")), "a half-written report was left behind"


def test_kills_at_every_stage_lose_nothing_and_the_rerun_matches_an_uninterrupted_run(
    inputs: tuple[Path, Path],
    reference: tuple[int, dict],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = tmp_path / "run"
    argv = _argv(inputs, run_dir)
    killed = -signal.SIGKILL

    # 1. after the baseline was fitted, before it was recorded: nothing is in the ledger
    assert _killed_fork(argv, "baseline") == killed
    assert _run_ids(run_dir) == []
    # 2. mid-training of the first rung: the baseline is kept, the half-trained rung is not
    assert _killed_fork(argv, "train:tiny-a-t1") == killed
    assert _run_ids(run_dir) == ["baseline"]
    assert not (run_dir / "runs" / "tiny-a-t1" / "model").exists()
    # 3. inside the ledger transaction of the second rung: the journal rolls the half record back
    assert _killed_fork(argv, "ledger:tiny-b-t1") == killed
    assert (run_dir / "ledger.sqlite-journal").exists(), "the kill did not land inside the transaction"
    assert _run_ids(run_dir) == ["baseline", "tiny-a-t1"]
    # 4. half-way through writing report.json: no report.json at all, never half of one
    assert _killed_fork(argv, "report:report.json") == killed
    assert _run_ids(run_dir) == ORDER
    assert not (run_dir / "report.json").exists()
    capsys.readouterr()

    # the same command again finishes, reading every finished run back
    code = main(argv)
    _check_resumed(run_dir, reference, code, capsys.readouterr().err)
    before = (run_dir / "report.json").read_bytes()

    # 5. killed while replacing an existing report: readers still see the complete old one
    assert _killed_fork(argv, "report:report.json") == killed
    assert (run_dir / "report.json").read_bytes() == before
    json.loads(before)
    capsys.readouterr()
    code = main(argv)
    _check_resumed(run_dir, reference, code, capsys.readouterr().err)


def test_a_second_advise_on_a_locked_run_dir_stops_with_the_lock_message(
    inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "keep.txt").write_text("untouched")
    # the other advise process, reduced to what matters here: it holds the run directory's lock
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
            "print('held', flush=True); sys.stdin.read()",
            str(run_dir / LOCK_NAME),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code = main(_argv(inputs, run_dir))
    finally:
        holder.communicate("")
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("advise: error: ")]
    assert lines == [
        f"advise: error: Another advise process is using {run_dir}. Wait for it to finish, or pass a different --out."
    ]
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_NAME, "keep.txt"]  # nothing was written


def _cli(argv: list[str], point: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("GREENLADDER_FAULT", None)
    if point:
        env["GREENLADDER_FAULT"] = point
    return subprocess.run(
        [sys.executable, "-m", "advisor.cli", *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow  # five fresh `advise` processes: the imports alone take ~15 s each on 2 cores
def test_real_advise_processes_killed_at_every_stage_resume_without_retraining(
    inputs: tuple[Path, Path], reference: tuple[int, dict], tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    argv = _argv(inputs, run_dir)
    expected_rows = {
        "baseline": [],
        "train:tiny-a-t1": ["baseline"],
        "ledger:tiny-b-t1": ["baseline", "tiny-a-t1"],
        "report:report.json": ORDER,
    }
    for point, rows in expected_rows.items():
        proc = _cli(argv, point)
        assert proc.returncode == -signal.SIGKILL, (point, proc.stderr[-2000:])
        assert _run_ids(run_dir) == rows, point
        assert not (run_dir / "report.json").exists()
    proc = _cli(argv, None)
    _check_resumed(run_dir, reference, proc.returncode, proc.stderr)


def test_a_diverging_run_is_stopped_by_the_health_rules_and_the_ladder_carries_on(
    inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = [
        *_argv(inputs, out),
        "--set",
        "rules.enabled=true",
        "--set",
        "train.learning_rate=1e8",  # far past any sane step size: the weights blow up at once
        "--set",
        "tuning.lr_max=1e9",
        "--set",
        "train.warmup_ratio=0.0",
        "--set",
        "train.epochs=6",  # 24 steps planned (4 per epoch: validation takes 35 % of 80 rows), so stopping within 20 is a real stop
        "--set",
        "tuning.epochs_max=6",
    ]
    main(argv)
    err = capsys.readouterr().err
    doc = json.loads((out / "report.json").read_text())
    first, second = doc["runs"]
    assert first["run_id"] == "tiny-a-t1" and first["status"] == "stopped", first["message"]
    rule = first["details"]["rule"]
    assert first["message"].startswith(f"stopped by rule {rule['rule']} at step {rule['step']}")
    assert rule["step"] <= 20 < first["details"]["total_steps"]
    assert first["details"]["steps_saved"] > 0
    # the climb went on to the next rung instead of ending on the diverged one
    assert second["run_id"] == "tiny-b-t1" and "tiny-b-t1: fine-tuning" in err


def test_work_lost_to_kills_is_counted_labelled_and_the_totals_are_the_uninterrupted_run_plus_it(
    inputs: tuple[Path, Path], reference: tuple[int, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    argv = _argv(inputs, run_dir)
    killed = -signal.SIGKILL
    # tiny-a-t1 is killed at its first evaluation; then tiny-b-t1 is killed after training, inside its
    # record's transaction: both are trained again on the next run, and both spent compute before
    assert _killed_fork(argv, "train:tiny-a-t1") == killed
    assert _killed_fork(argv, "ledger:tiny-b-t1") == killed
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    _, ref = reference
    assert code == reference[0]
    doc = json.loads((run_dir / "report.json").read_text())
    lost = doc["details"]["lost_to_interruption"]
    (a, b) = lost["runs"]
    ref_runs = {r["run_id"]: r for r in ref["runs"]}
    # the first was checkpointed at the end of the step before its first evaluation
    assert a["run_id"] == "tiny-a-t1" and a["step"] == ref_runs["tiny-a-t1"]["details"]["eval_history"][0]["step"]
    assert 0 < a["cost"]["train_flops"] < ref_runs["tiny-a-t1"]["cost"]["train_flops"] and a["cost"]["wall_s"] > 0
    # the second had finished: its whole cost was checkpointed, FLOPs for FLOPs the uninterrupted run's
    assert b["run_id"] == "tiny-b-t1" and b["step"] is None
    for key in ("train_flops", "eval_flops", "inference_flops", "padding_flops", "tokens", "padded_tokens"):
        assert b["cost"][key] == ref_runs["tiny-b-t1"]["cost"][key], key
    # totals: exactly the uninterrupted run's plus what was lost
    for key in ("train_flops", "eval_flops", "tokens"):
        assert doc["total_cost"][key] == ref["total_cost"][key] + (a["cost"][key] + b["cost"][key]), key
    assert lost["cost"]["train_flops"] == a["cost"]["train_flops"] + b["cost"]["train_flops"]
    # and the reader is told, on the console (tiny-a-t1's loss was booked by the second, killed run) and in the reports
    assert "tiny-b-t1: interrupted last time after it finished, before it was recorded;" in err
    assert "tiny-a-t1: interrupted" not in err
    notes = (run_dir / "report.md").read_text()
    assert "Lost to interruption, included in the cost of the search:" in notes
    assert f"tiny-a-t1 (at step {a['step']}:" in notes and "tiny-b-t1 (finished but not recorded:" in notes
    # a further rerun books nothing new: the lost work was settled once
    capsys.readouterr()
    assert main(argv) == code
    again = json.loads((run_dir / "report.json").read_text())
    assert again["details"]["lost_to_interruption"] == lost and again["total_cost"] == doc["total_cost"]
