"""End to end: ``accelerate launch`` on two CPU processes (gloo) against one process alone.

The same tiny climb runs twice: in this process, and as a two-process DDP job started by
accelerate. Both must recommend the same model with the same scores, and the job's FLOPs must be
the single process's (every rank's share added up, not one rank's half), while only rank 0 writes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from advisor.cli import main as advise_main
from advisor.store.ledger import Ledger
from tests.conftest import KEYWORD_TASK_SETS, make_tiny_model, set_flags, synthetic_rows, tiny_rung, write_ladder

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _task(tmp_path: Path) -> list[str]:
    """A keyword task the tiny model learns in 96 steps; TF-IDF learns it too, so the baseline is
    kept out by a parameter ceiling (its 262k hashed features against the tiny model's 11k)."""
    rows = synthetic_rows(384, seed=1)

    def part(r: list[tuple[str, str]]) -> datasets.Dataset:
        return datasets.Dataset.from_dict({"text": [t for t, _ in r], "label": [y for _, y in r]})

    # 256 = 16 batches of 16 and 64 = one evaluation batch: no batch is topped up with repeated rows
    # (accelerate's even_batches), so the two jobs process exactly the same rows
    datasets.DatasetDict(train=part(rows[:256]), validation=part(rows[256:320]), test=part(rows[320:])).save_to_disk(
        tmp_path / "data"
    )
    folder = make_tiny_model(tmp_path / "tiny-a", seed=0, layers=1)
    rung = tiny_rung(folder, "tiny-a", params_total=10_951, params_non_embedding=7_975, description="tiny")
    write_ladder(tmp_path / "ladder.yaml", [rung])
    sets = {**KEYWORD_TASK_SETS, "tuning.trials_per_rung": "2"}
    data, ladder = str(tmp_path / "data"), str(tmp_path / "ladder.yaml")
    return ["--data", data, "--ladder", ladder, "--target", "accuracy=0.9", *set_flags(sets)]


def _real_flops(run: dict) -> float:  # type: ignore[type-arg]
    c = run["cost"]
    return float(c["train_flops"] + c["eval_flops"] - c["padding_flops"])


# two fresh processes pay the imports again and share the 2 cores with a third: ~40 s, out of the default suite
@pytest.mark.multiprocess
def test_accelerate_two_cpu_processes_match_one_process(tmp_path: Path) -> None:
    args = _task(tmp_path)
    assert advise_main([*args, "--out", str(tmp_path / "single")]) == 0

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "CUDA_VISIBLE_DEVICES": "",  # CPU processes and gloo, also on a machine with GPUs
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
    }
    # accelerate's --cpu flag alone starts one process (its "simple launcher"); --multi_gpu starts
    # torchrun, which on a machine without visible GPUs runs CPU processes over gloo
    launch = [
        *(sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"),
        *("--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"),
        *("--main_process_port", str(_free_port()), "-m", "advisor.cli"),
    ]
    done = subprocess.run(
        [*launch, *args, "--out", str(tmp_path / "multi")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # rank 0 alone reports (stdout) and writes
    assert done.stdout.count("answer:") == 1, done.stdout

    one = json.loads((tmp_path / "single" / "report.json").read_text(encoding="utf-8"))
    two = json.loads((tmp_path / "multi" / "report.json").read_text(encoding="utf-8"))
    assert one["recommendation"]["run_id"] == two["recommendation"]["run_id"] == "tiny-a-t1"
    assert one["recommendation"]["metrics"]["accuracy"] >= 0.9  # it learned: the floor is not a formality
    assert [r["run_id"] for r in one["runs"]] == [r["run_id"] for r in two["runs"]]
    for a, b in zip(one["runs"], two["runs"], strict=True):
        assert a["metrics"] == b["metrics"] and a["hyperparameters"] == b["hyperparameters"]
        assert b["details"]["ranks"] == 2 and "ranks" not in a["details"]
        # every token once, whichever rank processed it
        assert a["cost"]["tokens"] == b["cost"]["tokens"]
        assert _real_flops(b) == pytest.approx(_real_flops(a), rel=0.01)
        # padding differs a little: each rank pads its half of a batch to that half's longest row
        assert b["cost"]["train_flops"] + b["cost"]["eval_flops"] == pytest.approx(
            a["cost"]["train_flops"] + a["cost"]["eval_flops"], rel=0.03
        )
    with Ledger(tmp_path / "multi") as ledger:  # one record per run, written by rank 0
        assert [r.run_id for r in ledger.all()] == ["baseline", "tiny-a-t1"]
    assert (tmp_path / "multi" / "model" / "model.safetensors").is_file()
