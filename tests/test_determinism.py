"""Determinism: the same command with the same seed on the same machine gives the same answer.

Two `advise` runs into two run directories climb a ladder of tiny models with two trials per rung
(the second one drawn by the TPE sampler), and must agree on every hyperparameter, every metric, every
intermediate evaluation and the recommendation. A different seed must change something, or the check
would pass for a seed that is never used.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from advisor.cli import main
from tests.conftest import make_tiny_model, synthetic_rows, write_csv

SETTINGS = [
    "--set",
    "metering.codecarbon=false",
    "--set",
    "train.epochs=1",
    "--set",
    "train.batch_size=16",
    "--set",
    "train.freeze_embeddings=false",
    "--set",
    "tuning.trials_per_rung=2",
    "--set",
    "tuning.epochs_max=1",
    "--target",
    "accuracy=0.5",
    "--max-params",
    "5",  # no run passes, so every rung and every trial is trained and compared
    "--set",
    "ladder.distil_on_ceiling=false",  # no distillation step: the climb alone is under test
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("determinism")
    rungs = []
    for i, name in enumerate(("tiny-a", "tiny-b")):
        folder = make_tiny_model(root / name, seed=i, layers=i + 1)
        rungs.append(
            {
                "name": name,
                "source": str(folder),
                "description": "tiny",
                "params_total": 10_000 * (i + 1),
                "params_non_embedding": 9_000 * (i + 1),
                "layers": i + 1,
                "hidden": 32,
            }
        )
    ladder = root / "ladder.yaml"
    ladder.write_text(yaml.safe_dump({"rungs": rungs}))
    return write_csv(root / "data.csv", synthetic_rows(100)), ladder


def _advise(inputs: tuple[Path, Path], out: Path, *extra: str) -> tuple[int, dict]:
    data, ladder = inputs
    code = main(["--data", str(data), "--ladder", str(ladder), "--out", str(out), *SETTINGS, *extra])
    return code, json.loads((out / "report.json").read_text())


def _outcome(doc: dict) -> dict:
    """Everything a result depends on, without the timings (wall time and latency vary run to run)."""
    runs = {}
    for run in [doc["baseline"], *doc["runs"]]:
        runs[run["run_id"]] = {
            "status": run["status"],
            "hyperparameters": run["hyperparameters"],
            "metrics": run["metrics"],
            "test_metrics": run["test_metrics"],
            "eval_history": run["details"].get("eval_history"),
            "train_flops": run["cost"]["train_flops"],
            "verdict": (run["verdict"]["passed"], run["verdict"]["reasons"]),
        }
    return {"recommendation": doc["recommendation"], "stop_reason": doc["stop_reason"], "runs": runs}


def test_same_command_same_seed_same_recommendation_and_metrics(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    code_a, first = _advise(inputs, tmp_path / "a")
    code_b, second = _advise(inputs, tmp_path / "b")
    assert code_a == code_b
    # the probes (one forward pass per text) come before the fine-tunes, in order of forecast compute
    assert list(_outcome(first)["runs"]) == [
        "baseline",
        "tiny-a-probe",
        "tiny-b-probe",
        "tiny-a-t1",
        "tiny-a-t2",
        "tiny-b-t1",
        "tiny-b-t2",
    ]
    assert _outcome(first) == _outcome(second)

    # the seed is really used: another one changes the trials (one rung is enough to show it)
    _, other = _advise(inputs, tmp_path / "c", "--set", "train.seed=1", "--set", "ladder.rungs=[tiny-a]")
    assert _outcome(other)["runs"]["tiny-a-t2"] != _outcome(first)["runs"]["tiny-a-t2"]
