from __future__ import annotations

import pytest

from advisor.climb.forecast import POWER_LAW_ALPHA, binomial_sigma, forecast_full


def test_power_law_forecast_when_no_rung_below() -> None:
    f = forecast_full(0.70, 0.25, n_validation=400)
    assert f.method == "power law"
    assert f.mean == pytest.approx(1 - 0.30 * 0.25**POWER_LAW_ALPHA)
    assert f.small_score < f.mean < f.optimistic <= 1.0


def test_learning_curve_transfer_uses_the_steps_seen_below() -> None:
    f = forecast_full(0.70, 0.25, n_validation=400, lower_rungs=[(0.60, 0.68), (0.65, 0.71)])
    assert f.method == "learning-curve transfer"
    assert f.mean == pytest.approx(0.70 + 0.07)
    assert f.sigma >= binomial_sigma(0.70, 400)


def test_more_validation_data_narrows_the_forecast() -> None:
    assert forecast_full(0.8, 0.25, 100).sigma > forecast_full(0.8, 0.25, 10_000).sigma


def test_fraction_must_be_a_real_fraction() -> None:
    with pytest.raises(ValueError, match="fraction"):
        forecast_full(0.8, 1.0, 100)
