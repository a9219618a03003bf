from __future__ import annotations

import math

from advisor.climb.tuning import RungTuner, default_trial, probe_trial
from advisor.config.settings import build_config


def _trials(tuner: RungTuner, n: int) -> list[tuple[dict, str]]:
    out = []
    for i in range(n):
        trial, hp, origin = tuner.ask()
        tuner.tell(trial, 0.5 + 0.01 * i)
        out.append((hp, origin))
    return out


def test_first_trial_is_the_cheap_default_then_warm_start() -> None:
    config = build_config()
    warm = {"learning_rate": 5e-5, "epochs": 2.0, "warmup_ratio": 0.0}
    trials = _trials(RungTuner(config, warm_start=warm), 3)
    assert trials[0] == (default_trial(config), "default")
    assert trials[1] == (warm, "warm start from rung below")
    assert trials[2][1] == "TPESampler"


def test_same_seed_gives_same_trials() -> None:
    config = build_config()
    assert _trials(RungTuner(config, seed=3), 5) == _trials(RungTuner(config, seed=3), 5)


def test_resumed_trials_are_not_proposed_again() -> None:
    config = build_config()
    previous = [(default_trial(config), 0.7)]
    tuner = RungTuner(config, previous=previous)
    _, hp, origin = tuner.ask()
    assert origin != "default"
    assert tuner.study.trials[0].value == 0.7


def test_random_sampler_is_available_for_comparison() -> None:
    config = build_config(overrides=["tuning.sampler=random"])
    trials = _trials(RungTuner(config), 3)
    assert trials[0][1] == "default" and trials[2][1] == "RandomSampler"


def test_plain_search_queues_neither_default_nor_warm_start() -> None:
    config = build_config(overrides=["tuning.sampler=random", "tuning.default_first=false", "tuning.warm_start=false"])
    warm = {"learning_rate": 5e-5, "epochs": 2.0, "warmup_ratio": 0.0}
    trials = _trials(RungTuner(config, warm_start=warm), 3)
    assert [origin for _, origin in trials] == ["RandomSampler"] * 3
    assert default_trial(config) not in [hp for hp, _ in trials] and warm not in [hp for hp, _ in trials]


def test_probe_moves_the_lr_the_way_the_validation_loss_points() -> None:
    config = build_config()
    default = default_trial(config)
    up = probe_trial(config, default, [0.5, 0.3, 0.2], ok=True)
    down = probe_trial(config, default, [0.5, 0.2, 0.4], ok=True)
    failed = probe_trial(config, default, [], ok=False)
    assert up is not None and up[0]["learning_rate"] == min(default["learning_rate"] * 3, config.tuning.lr_max)
    assert "up" in up[1]
    assert down is not None and math.isclose(down[0]["learning_rate"], default["learning_rate"] / 3)
    assert failed is not None and failed[0]["learning_rate"] < default["learning_rate"]
    assert up[0]["epochs"] == default["epochs"] and up[0]["warmup_ratio"] == default["warmup_ratio"]
    # already at the top of the range: no probe upwards
    at_max = {**default, "learning_rate": config.tuning.lr_max}
    assert probe_trial(config, at_max, [0.5, 0.3], ok=True) is None


def test_probe_is_the_second_trial_without_a_warm_start_and_third_behind_one() -> None:
    config = build_config(overrides=["tuning.trials_per_rung=3"])
    default = default_trial(config)
    tuner = RungTuner(config)
    trial, hp, origin = tuner.ask()
    tuner.tell(trial, 0.6)
    tuner.queue_probe(hp, [0.5, 0.3], ok=True)
    _, hp2, origin2 = tuner.ask()
    assert origin == "default" and origin2.startswith("probe: lr up")
    assert hp2["learning_rate"] == min(default["learning_rate"] * 3, config.tuning.lr_max)

    warm = {"learning_rate": 5e-5, "epochs": 2.0, "warmup_ratio": 0.0}
    tuner = RungTuner(config, warm_start=warm)
    trial, hp, _ = tuner.ask()
    tuner.tell(trial, 0.6)
    tuner.queue_probe(hp, [0.5, 0.7], ok=True)
    origins = []
    for _ in range(2):
        trial, _, o = tuner.ask()
        tuner.tell(trial, 0.6)
        origins.append(o)
    assert origins[0] == "warm start from rung below" and origins[1].startswith("probe: lr down")


def test_probe_can_be_turned_off() -> None:
    config = build_config(overrides=["tuning.probe=false"])
    tuner = RungTuner(config)
    trial, hp, _ = tuner.ask()
    tuner.tell(trial, 0.6)
    tuner.queue_probe(hp, [0.5, 0.3], ok=True)
    assert tuner.ask()[2] == "TPESampler"
