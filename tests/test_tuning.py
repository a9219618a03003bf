from __future__ import annotations

from advisor.config import build_config
from advisor.tuning import RungTuner, default_trial


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
