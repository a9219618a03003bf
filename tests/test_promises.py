"""What the README, the shipped configs and the messages promise is what the code does."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import yaml

import advisor.advise as advise_mod
from advisor.advise import advise
from advisor.config import build_config
from tests.conftest import make_tiny_model, synthetic_rows, write_csv

ROOT = Path(__file__).resolve().parent.parent

# -- the recommended model is stored once ---------------------------------------------------------


@pytest.fixture
def one_rung_ladder(tmp_path: Path) -> Path:
    folder = make_tiny_model(tmp_path / "tiny-a", seed=0, layers=1, hidden=32)
    rung = {"name": "tiny-a", "source": str(folder), "description": "1 layer", "layers": 1, "hidden": 32}
    rung |= {"params_total": 10_000, "params_non_embedding": 9_000}
    path = tmp_path / "ladder.yaml"
    path.write_text(yaml.safe_dump({"rungs": [rung]}))
    return path


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_recommended_model_is_moved_to_model_not_copied_and_a_rerun_finds_it(
    tmp_path: Path, one_rung_ladder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = advise_mod.fit_baseline

    def weak(*args, **kwargs):  # type: ignore[no-untyped-def]
        # TF-IDF solves the synthetic task: score it 0 so the rung is climbed
        run = real(*args, **kwargs)
        return dataclasses.replace(run, metrics={k: 0.0 for k in run.metrics})

    monkeypatch.setattr(advise_mod, "fit_baseline", weak)
    data = write_csv(tmp_path / "data.csv", synthetic_rows(120))
    run_dir = tmp_path / "run"
    config = build_config(
        overrides=[
            "train.epochs=1",
            "train.batch_size=16",
            "metering.codecarbon=false",
            "rules.enabled=false",
            "tuning.trials_per_rung=1",
            f"ladder.name={one_rung_ladder}",
            f"data.source={data}",
            "criteria.floor=0.3",  # chance on two balanced classes is 0.5: any rung passes
            f"output.out={run_dir}",
            "output.keep_checkpoints=true",  # nothing is deleted: any second copy would still be there
        ]
    )
    report = advise(config)
    assert report.recommendation == "tiny-a-t1", report.stop_reason
    weights = list(run_dir.rglob("model.safetensors"))
    assert weights == [run_dir / "model" / "model.safetensors"], weights
    assert not (run_dir / "runs" / "tiny-a-t1" / "model").exists()
    # the report points at the one copy, and it loads from there
    assert report.recommended is not None and report.recommended.artifact == "model"
    doc = json.loads((run_dir / "report.json").read_text())
    assert doc["recommendation"]["artifact"] == "model"
    size = _dir_bytes(run_dir / "model")

    # killed after the model was staged, before it replaced model/: the rerun finishes the move
    os.replace(run_dir / "model", run_dir / ".model-tmp")
    monkeypatch.setattr(advise_mod, "train_run", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = advise(config)
    assert again.recommendation == "tiny-a-t1"
    assert (run_dir / "model" / "model.safetensors").is_file() and not (run_dir / ".model-tmp").exists()
    assert (run_dir / "model" / "README.md").is_file() and (run_dir / "model" / "labels.json").is_file()
    assert _dir_bytes(run_dir / "model") == size
    assert list(run_dir.rglob("model.safetensors")) == [run_dir / "model" / "model.safetensors"]
