"""Frozen-encoder probes: pooling, the linear head, the saved folder, and probes as steps of the climb."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from advisor import runkey
from advisor.advise import advise
from advisor.climb import steps
from advisor.climb.policy import Evidence, Probe, RungInfo, Stop, Train, decide
from advisor.config.settings import build_config
from advisor.models.ladder import Rung
from advisor.report import card
from advisor.training import probe
from advisor.types import Candidate, Cost, RunResult
from tests.conftest import key_for, make_tiny_model, synthetic_rows, tiny_rung, write_csv, write_ladder


def test_mean_pooling_ignores_padding_and_cls_takes_the_first_token() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # [1, 3, 2]
    mask = torch.tensor([[1, 1, 0]])
    assert probe.pool(hidden, mask, "mean").tolist() == [[2.0, 3.0]]
    assert probe.pool(hidden, mask, "cls").tolist() == [[1.0, 2.0]]


def test_pooling_comes_from_the_checkpoint_config_before_the_ladder(tmp_path: Path) -> None:
    assert probe.checkpoint_pooling(tmp_path, None) == "mean"
    assert probe.checkpoint_pooling(tmp_path, "cls") == "cls"
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert probe.checkpoint_pooling(tmp_path, "mean") == "cls"


@pytest.mark.parametrize("k", [2, 3])
def test_the_head_folds_the_scaler_into_one_linear_layer(k: int) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, k, 300)
    x = rng.normal(size=(300, 8)) * 50 + 10
    x[:, 0] += 200 * y  # feature 0 decides the class, on a scale far from 1
    head = probe.fit_head(x, list(y), k, seed=0)
    assert head.weight.shape == (k, 8) and head.bias.shape == (k,)
    assert head.C in probe.C_GRID
    assert np.mean(head.predict(x) == y) > 0.95
    # the same predictions as sklearn's pipeline on standardised features
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ref = make_pipeline(StandardScaler(), LogisticRegression(C=head.C, max_iter=3000, random_state=0)).fit(x, y)
    assert np.array_equal(head.predict(x), ref.predict(x))


def _ladder(tmp_path: Path) -> Path:
    a = make_tiny_model(tmp_path / "tiny-a", seed=0, layers=1, hidden=32)
    b = make_tiny_model(tmp_path / "tiny-b", seed=1, layers=2, hidden=32)
    return write_ladder(
        tmp_path / "ladder.yaml",
        [tiny_rung(a, "tiny-a"), tiny_rung(b, "tiny-b", layers=2, params_total=20_000, params_non_embedding=18_000)],
    )


def _config(tmp_path: Path, floor: float, extra: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    data = write_csv(tmp_path / "data.csv", synthetic_rows(240))
    return build_config(
        overrides=[
            f"ladder.name={_ladder(tmp_path)}",
            f"data.source={data}",
            f"criteria.floor={floor}",
            f"output.out={tmp_path / 'run'}",
            "metering.codecarbon=false",
            "rules.enabled=false",
            "tuning.trials_per_rung=1",
            "train.epochs=1",
            *extra,
        ]
    )


def test_a_passing_probe_is_the_recommendation_saved_loaded_back_and_timed(
    tmp_path: Path, weak_baseline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    lines: list[str] = []
    report = advise(_config(tmp_path, floor=0.7), progress=lines.append)
    # the order is shown before the first step past the baseline: both probes are cheaper than any fine-tune
    order = lines.index("climb order (cheapest forecast first):")
    shown = [re.split(r"\s+", line.strip())[1] for line in lines[order + 1 : order + 5]]
    assert shown[:2] == ["tiny-a-probe", "tiny-b-probe"] and set(shown[2:]) == {"tiny-a", "tiny-b"}
    # a random tiny encoder's mean-pooled word vectors still separate the keyword task linearly
    assert report.recommendation == "tiny-a-probe", report.stop_reason
    assert [r.run_id for r in report.runs] == ["tiny-a-probe"]  # nothing costlier was trained
    rec = report.recommended
    assert rec is not None and rec.candidate.kind == "probe"
    # judged on out-of-fold predictions over train + validation, like the baseline
    cv = rec.cv
    assert cv is not None and len(cv.predictions) == len(cv.labels) > len(rec.val_predictions)
    assert report.verdicts["tiny-a-probe"].interval["n"] == len(cv.labels)
    assert report.verdicts["tiny-a-probe"].interval["low"] >= 0.7
    # metered: the encoder's forward FLOPs on the training rows (train) and the validation rows (eval)
    assert rec.cost.train_flops > 0 and rec.cost.eval_flops > 0
    assert rec.footprint.latency_ms_p95 is not None and rec.footprint.size_mb and rec.footprint.params
    assert rec.candidate.params_total == rec.footprint.params
    # scored once on test, by the published folder loaded back
    folder = tmp_path / "run" / "model"
    assert rec.test_metrics["accuracy"] >= 0.7
    assert (folder / "encoder" / "model.safetensors").is_file() and (folder / "head.safetensors").is_file()
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pkl"))
    loaded = probe.ProbeModel(folder)
    texts = [t for t, _ in synthetic_rows(40, seed=5)]
    ids = loaded.predict(texts)
    # the model card's snippet, run as written with transformers and torch alone, gives the same labels
    snippet = "\n".join(card.PROBE_SNIPPET[1:-1]).replace("path/to/this/folder", str(folder))
    snippet = snippet.replace('texts = ["some text to classify"]', f"texts = {texts!r}")
    exec(compile(snippet, "card-snippet", "exec"), {})
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed == str([loaded.labels[i] for i in ids])
    assert "head.safetensors" in (folder / "README.md").read_text()


def test_probes_off_climbs_fine_tunes_only(tmp_path: Path, weak_baseline: None) -> None:
    report = advise(_config(tmp_path, floor=0.99, extra=("ladder.probes=false", "train.epochs=0.2")))
    assert [r.candidate.kind for r in report.runs] == ["finetune", "finetune"]


# ----------------------------------------------------------------------------- order and policy


def _rung(name: str, layers: int, hidden: int, optional: bool = False) -> Rung:
    return Rung(
        name, f"/models/{name}", name, 10 * layers * hidden**2, 9 * layers * hidden**2, layers, hidden, optional
    )


def test_steps_are_ordered_by_forecast_compute_and_optional_encoders_are_probed() -> None:
    config = build_config(overrides=["train.epochs=3"])
    rungs = (_rung("small", 3, 384), _rung("mid", 6, 384), _rung("big", 12, 768, optional=True))
    listed = steps.steps_for(rungs, config)
    assert [s.name for s in listed] == ["small-probe", "small", "mid-probe", "mid", "big-probe"]
    train, val = [40] * 2400, [40] * 800
    ordered = steps.order_steps(listed, rungs, train, val, 2, config)
    flops = [s.forecast_flops for s in ordered]
    assert flops == sorted(flops) and all(f and f > 0 for f in flops)
    names = [s.name for s in ordered]
    # a probe is one forward pass per training text, a fine-tune three per text per epoch: 9x at 3 epochs
    assert names.index("small-probe") < names.index("small") and names.index("mid-probe") < names.index("mid")
    by = {s.name: s.forecast_flops for s in ordered}
    assert 8.5 < by["mid"] / by["mid-probe"] < 9.5
    # the big encoder's probe costs about what the mid fine-tune costs (4x the width, 2x the depth: ~8x per pass)
    assert 0.5 < by["big-probe"] / by["mid"] < 1.5
    # naming the optional encoder adds its fine-tune, the costliest step
    named = steps.steps_for(rungs, build_config(overrides=["ladder.rungs=[small,mid,big]"]))
    assert "big" in [s.name for s in named]
    assert steps.order_steps(named, rungs, train, val, 2, config)[-1].name == "big"


def test_a_probe_named_like_a_rung_is_a_config_error() -> None:
    from advisor.errors import ConfigError

    with pytest.raises(ConfigError, match="ladder.probes=false"):
        steps.steps_for((_rung("x", 1, 8), _rung("x-probe", 1, 8)), build_config())


def _run(run_id: str, kind: str, correct: int, n: int = 400) -> RunResult:
    labels = [i % 2 for i in range(n)]
    preds = [y if i < correct else 1 - y for i, y in enumerate(labels)]
    return RunResult(
        key=key_for(run_id),
        candidate=Candidate(name=run_id.split("-t")[0], kind=kind, source="s"),  # type: ignore[arg-type]
        hyperparameters={},
        status="ok",
        metrics={"accuracy": correct / n},
        cost=Cost(train_flops=1e12),
        val_predictions=tuple(preds),
    )


def _evidence(runs: list[RunResult], infos: tuple[RungInfo, ...]) -> Evidence:
    return Evidence(infos, tuple(runs), tuple(i % 2 for i in range(400)), 2)


INFOS = (
    RungInfo("a-probe", method="probe", encoder="a"),
    RungInfo("a", method="finetune", encoder="a"),
    RungInfo("b-probe", method="probe", encoder="b"),
)


def test_the_policy_takes_steps_in_the_given_order_and_stops_at_a_passing_probe() -> None:
    config = build_config(
        overrides=["criteria.floor=0.8", "tuning.trials_per_rung=1", "ladder.distil_on_ceiling=false"]
    )
    base = _run("baseline", "baseline", 240)
    assert decide(_evidence([base], INFOS), config) == Probe("a", runkey.probe("a"))
    weak = _run("a-probe", "probe", 250)
    assert decide(_evidence([base, weak], INFOS), config) == Train("a", runkey.trial("a", 1))
    trial = _run("a-t1", "finetune", 260)
    assert decide(_evidence([base, weak, trial], INFOS), config) == Probe("b", runkey.probe("b"))
    strong = _run("b-probe", "probe", 380)
    stop = decide(_evidence([base, weak, trial, strong], INFOS), config)
    assert isinstance(stop, Stop) and stop.recommendation == "b-probe" and stop.outcome == "met"


def test_each_probe_is_one_candidate_of_the_bonferroni_family() -> None:
    from advisor.climb.policy import rung_candidates

    config = build_config(overrides=["tuning.trials_per_rung=2", "ladder.distil_on_ceiling=false"])
    assert rung_candidates(INFOS, config) == 1 + 2 + 1


def test_a_trial_is_known_by_its_key_whatever_its_rung_is_called() -> None:
    """``bert-tiny-small`` holds ``-t`` and ``-small``: ids once parsed made its small experiment a
    trial (the next rung's warm start). Roles are fields of the key now; only old records are read
    from their ids, by the one legacy reader."""
    from advisor.climb.policy import is_trial
    from advisor.runkey import RunKey

    def run(key: RunKey, kind: str = "finetune") -> RunResult:
        cand = Candidate(name=key.step or "baseline", kind=kind, source="s")  # type: ignore[arg-type]
        return RunResult(key, cand, {}, "ok", {"accuracy": 0.5}, Cost())

    assert is_trial(run(RunKey("trial", "bert-tiny-small", 1))) and is_trial(run(RunKey("trial", "x", 12)))
    assert not is_trial(run(RunKey("small", "bert-tiny")))
    assert not is_trial(run(RunKey("probe", "bert-tiny"), "probe"))
    assert not is_trial(run(RunKey("student", "bert-tiny-t1"), "distilled"))
    assert not is_trial(run(RunKey("continuation", "bert-tiny", 1)))
    # the legacy reader: the longest rung name that makes the id, then the role
    assert RunKey.from_legacy_id("bert-tiny-small-t1") == RunKey("trial", "bert-tiny-small", 1)
    assert RunKey.from_legacy_id("bert-tiny-t1-student") == RunKey("student", "bert-tiny-t1")
    with pytest.raises(ValueError, match="not a run id"):
        RunKey.from_legacy_id("bert-tiny-tx")
