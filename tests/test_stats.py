"""Intervals, paired gains and sample sizes: checked against scikit-learn, scipy and simulation."""

from __future__ import annotations

import numpy as np
import pytest

from advisor.verdicts.criteria import SUPPORTED_METRICS, compute_metrics
from advisor.verdicts.stats import (
    bonferroni,
    metric_interval,
    metric_value,
    paired_gain,
    rows_for_margin,
    rows_to_resolve,
    wilson,
)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_metrics_from_confusion_matrices_equal_scikit_learns(k: int) -> None:
    rng = np.random.default_rng(k)
    t = rng.integers(0, k, 300)
    p = np.where(rng.random(300) < 0.7, t, rng.integers(0, k, 300))
    ref = compute_metrics(t, p, [str(i) for i in range(k)])
    for metric in SUPPORTED_METRICS:
        if metric in ref:
            assert metric_value(metric, t, p, k) == pytest.approx(ref[metric], abs=1e-12), metric


def test_wilson_interval_matches_the_textbook_figure() -> None:
    # Wilson 95% for 81 of 263 (Newcombe 1998, example): 0.2553 to 0.3662
    low, high = wilson(81, 263, 0.95)
    assert low == pytest.approx(0.2553, abs=5e-4) and high == pytest.approx(0.3662, abs=5e-4)


def test_bootstrap_interval_covers_the_truth_at_about_its_level() -> None:
    # 200 simulated validation sets from a classifier with a known macro-F1: the 90% interval should
    # contain it about 90% of the time (binomial slack: at least 82% of 200)
    rng = np.random.default_rng(0)
    big_t = rng.integers(0, 2, 200_000)
    big_p = np.where(rng.random(200_000) < 0.8, big_t, 1 - big_t)
    truth = metric_value("macro_f1", big_t, big_p, 2)
    hits = 0
    for seed in range(200):
        idx = np.random.default_rng(seed + 1).integers(0, 200_000, 300)
        iv = metric_interval("macro_f1", big_t[idx], big_p[idx], 2, 0.90, replicates=500, seed=seed)
        hits += iv.low <= truth <= iv.high
    assert hits >= 164


def test_paired_gain_sees_a_difference_unpaired_intervals_would_miss() -> None:
    rng = np.random.default_rng(3)
    t = rng.integers(0, 2, 400)
    a = np.where(rng.random(400) < 0.80, t, 1 - t)
    b = a.copy()
    flip = np.flatnonzero(a == t)[:12]  # b is a, wrong on 12 more rows: 3 points worse, on the same rows
    b[flip] = 1 - t[flip]
    g = paired_gain("accuracy", t, a, b, 2, 0.95)
    assert g.points == pytest.approx(3.0)
    assert g.distinguishable and g.low > 0 and g.p_value is not None and g.p_value < 0.01
    # the two models' own intervals overlap: subtracting them would have said "no difference"
    ia, ib = metric_interval("accuracy", t, a, 2, 0.95), metric_interval("accuracy", t, b, 2, 0.95)
    assert ia.low < ib.high
    same = paired_gain("accuracy", t, a, a, 2, 0.95)
    assert same.points == 0 and not same.distinguishable


def test_rows_needed_and_bonferroni() -> None:
    # a model 3 points above a 0.78 floor needs about 700 rows to be told apart at 95%
    assert 600 < rows_to_resolve(0.81, 0.78, 0.95) < 800
    assert rows_to_resolve(0.78, 0.78, 0.95) is None
    assert rows_for_margin(0.78, 0.03, 0.95) == pytest.approx(733, abs=2)
    assert bonferroni(0.95, 5) == pytest.approx(0.99)


def test_the_bootstrap_is_drawn_in_chunks_with_the_draws_it_always_had() -> None:
    """Chunked weights and a weighted bincount give the very confusion matrices of one dense draw and
    a one-hot product (what the bootstrap did before), without a replicates x rows x classes^2 product."""
    import numpy as np

    from advisor.verdicts import stats

    rng = np.random.default_rng(1)
    n, k, replicates = 257, 7, 230  # replicates not a multiple of the chunk
    y, p = rng.integers(0, k, n), rng.integers(0, k, n)
    pairs = y * k + p
    weights = np.random.default_rng(5).multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(float)
    onehot = np.zeros((n, k * k))
    onehot[np.arange(n), pairs] = 1.0
    dense = (weights @ onehot).reshape(-1, k, k)
    (chunked,) = stats._boot_confusions([pairs], k, replicates, seed=5)
    assert np.array_equal(chunked, dense) and chunked.sum(axis=(1, 2)).tolist() == [n] * replicates
