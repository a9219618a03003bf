"""Incremental training (``advise --from``): continue an earlier recommendation on expanded data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

import advisor.advise as advise_mod
import advisor.incremental as incremental_mod
from advisor.advise import advise
from advisor.config import build_config
from tests.conftest import make_tiny_model, synthetic_rows, write_csv
from tests.test_advise import FAST, _config


@pytest.fixture
def ladder(tmp_path: Path) -> Path:
    """A one-rung ladder of a tiny random BERT (the earlier climb recommends it)."""
    a = make_tiny_model(tmp_path / "tiny-a", seed=0, layers=1, hidden=32)
    rung = {
        "name": "tiny-a",
        "source": str(a),
        "description": "1 layer",
        "params_total": 10_000,
        "params_non_embedding": 9_000,
        "layers": 1,
        "hidden": 32,
    }
    path = tmp_path / "ladder.yaml"
    path.write_text(yaml.safe_dump({"rungs": [rung]}))
    return path


@pytest.fixture
def weak_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real baseline scored 0, in the climb and when refitted, so that a transformer is recommended."""
    real = advise_mod.fit_baseline

    def fit(*args, **kwargs):  # type: ignore[no-untyped-def]
        run = real(*args, **kwargs)
        return dataclasses.replace(run, metrics={k: 0.0 for k in run.metrics})

    monkeypatch.setattr(advise_mod, "fit_baseline", fit)
    monkeypatch.setattr(incremental_mod, "fit_baseline", fit)


def test_incremental_training_continues_the_recommended_model_on_expanded_data(
    tmp_path: Path, ladder: Path, weak_baseline: None
) -> None:
    first = write_csv(tmp_path / "first.csv", synthetic_rows(120))
    report = advise(_config(tmp_path, ladder, first, floor=0.3))
    assert report.recommendation == "tiny-a-t1"
    expanded = write_csv(tmp_path / "expanded.csv", synthetic_rows(200, seed=1))
    config = build_config(
        overrides=[*FAST, f"data.source={expanded}", "criteria.floor=0.3", f"output.out={tmp_path / 'run2'}"]
    )
    again = advise(config, from_run=tmp_path / "run")
    [run] = again.runs
    assert run.run_id == "tiny-a-incremental" and run.candidate.kind == "incremental"
    assert run.candidate.parent_run == str(tmp_path / "run")
    inc = again.details["incremental"]
    assert inc["from_run"] == "tiny-a-t1"
    assert inc["incremental_cost"]["train_flops"] > 0 and inc["from_scratch_cost"]["train_flops"] > 0
    assert again.recommendation == "tiny-a-incremental"


def test_incremental_training_refuses_labels_the_earlier_model_does_not_know(
    tmp_path: Path, ladder: Path, weak_baseline: None
) -> None:
    from advisor.errors import DataError

    first = write_csv(tmp_path / "first.csv", synthetic_rows(120))
    advise(_config(tmp_path, ladder, first, floor=0.3))
    rows = synthetic_rows(150, seed=2)
    rows = [(t, "mixed" if i % 3 == 0 else y) for i, (t, y) in enumerate(rows)]
    expanded = write_csv(tmp_path / "expanded.csv", rows)
    config = build_config(overrides=[*FAST, f"data.source={expanded}", f"output.out={tmp_path / 'run2'}"])
    with pytest.raises(DataError, match="labels the earlier model does not know: mixed"):
        advise(config, from_run=tmp_path / "run")
    assert not (tmp_path / "run2").exists()
