"""Uncertainty of metrics: intervals, paired gains, and how many rows a decision needs.

Pure functions of label arrays; nothing here reads files or trains. Every figure greenladder
decides with is an estimate from a finite set of rows, so it travels with its interval:

* accuracy (and micro-F1, which equals it for single-label data) is a proportion: a Wilson score
  interval (Wilson 1927; recommended over the normal interval by Brown, Cai & DasGupta 2001,
  "Interval Estimation for a Binomial Proportion"), via ``scipy.stats.binomtest``;
* every other metric gets a percentile bootstrap over rows (Efron & Tibshirani 1993);
* the gain of one model over another on the *same* rows gets a paired bootstrap (both models'
  predictions resampled with the same row weights), so the rows' shared difficulty cancels out;
  for accuracy an exact McNemar p-value is given beside it.

The bootstrap is vectorised: one multinomial draw of row weights per replicate, and every metric is
computed from the replicate's weighted confusion matrix, so 2,000 replicates on 1,000 rows take
milliseconds rather than 2,000 calls into scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: label ids, one per row
Labels = Sequence[int]

#: metrics that are a share of rows (a binomial proportion for single-label data)
PROPORTIONS = ("accuracy", "micro_f1")
#: bootstrap replicates; the percentile interval's Monte Carlo error at 2,000 is about 0.1 point
BOOTSTRAP_REPLICATES = 2000


@dataclass(frozen=True)
class Interval:
    """A metric's estimate with its confidence interval: ``0.761 [0.729, 0.791], n=444``."""

    value: float
    low: float
    high: float
    level: float
    n: int
    method: str

    def __post_init__(self) -> None:
        if not 0 < self.level < 1:
            raise ValueError(f"Interval.level must be in (0, 1). Got {self.level!r} instead.")
        if self.n < 0 or not self.low <= self.high:
            raise ValueError(f"Interval needs n >= 0 and low <= high. Got n={self.n}, [{self.low}, {self.high}].")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}], n={self.n}"


@dataclass(frozen=True)
class PairedGain:
    """Gain of model a over model b on the same rows, in points (0-100), with its paired interval."""

    points: float
    low: float
    high: float
    level: float
    n: int
    method: str
    #: exact McNemar two-sided p-value (accuracy only), else None
    p_value: float | None = None

    @property
    def distinguishable(self) -> bool:
        """True when the interval excludes zero: the data show a difference at this level."""
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "distinguishable": self.distinguishable}

    def text(self) -> str:
        note = "" if self.distinguishable else " (not distinguishable from 0)"
        return f"{self.points:+.1f} [{self.low:+.1f}, {self.high:+.1f}] pts{note}"


# ----------------------------------------------------------------------------- confusion-matrix metrics


def _metric_from_confusion(metric: str, cm: np.ndarray) -> np.ndarray:
    """Metric values from confusion matrices.

    Args:
        metric: one of advisor.verdicts.criteria.SUPPORTED_METRICS.
        cm: counts, shape (B, K, K): ``cm[b, t, p]`` rows of true class t predicted as p.

    Returns:
        shape (B,): the metric of each matrix, with scikit-learn's conventions (zero_division=0).
    """
    cm = cm.astype(float)
    k = cm.shape[-1]
    total = cm.sum(axis=(1, 2))
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support = cm.sum(axis=2)  # true counts per class, (B, K)
    predicted = cm.sum(axis=1)  # predicted counts per class, (B, K)

    def div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.divide(a, b, out=np.zeros_like(a, dtype=float), where=b > 0)

    precision, recall = div(tp, predicted), div(tp, support)
    f1 = div(2 * precision * recall, precision + recall)
    if metric in ("accuracy", "micro_f1"):
        return div(tp.sum(axis=1), total)
    if metric == "macro_f1":
        return f1.mean(axis=1)
    if metric == "weighted_f1":
        return div((f1 * support).sum(axis=1), total)
    if metric == "macro_precision":
        return precision.mean(axis=1)
    if metric == "macro_recall":
        return recall.mean(axis=1)
    if metric == "balanced_accuracy":
        present = support > 0
        return div((recall * present).sum(axis=1), present.sum(axis=1).astype(float))
    if metric in ("f1", "precision", "recall"):
        if k != 2:
            raise ValueError(f"{metric} is defined for two classes, got {k}")
        return {"f1": f1, "precision": precision, "recall": recall}[metric][:, 1]
    if metric == "mcc":
        # Gorodkin's multiclass MCC, as scikit-learn computes it
        c, s = tp.sum(axis=1), total
        cov_ytyp = c * s - (support * predicted).sum(axis=1)
        cov_ypyp = s * s - (predicted * predicted).sum(axis=1)
        cov_ytyt = s * s - (support * support).sum(axis=1)
        denom = np.sqrt(cov_ytyt * cov_ypyp)
        return div(cov_ytyp, denom)
    raise ValueError(f"unknown metric {metric!r}")


def _pairs(y_true: Sequence[int], y_pred: Sequence[int], k: int) -> np.ndarray:
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    return t * k + p


#: bootstrap replicates drawn at a time: memory stays near this many times the rows, in floats
_CHUNK = 100


def _boot_confusions(pairs: Sequence[np.ndarray], k: int, replicates: int, seed: int) -> list[np.ndarray]:
    """Bootstrap confusion matrices, shape (replicates, k, k), of each of ``pairs`` (codes of the same
    rows), all resampled with the same row weights: each replicate counts how often each row was
    drawn (a multinomial of n draws over the n rows). The weights are drawn ``_CHUNK`` replicates at
    a time (the same draws as all at once) and counted by one weighted bincount per chunk, so the
    work grows with replicates x rows, not with the k x k cells too."""
    n, k2 = int(pairs[0].size), k * k
    rng = np.random.default_rng(seed)
    out = [np.empty((replicates, k2)) for _ in pairs]
    for start in range(0, replicates, _CHUNK):
        size = min(_CHUNK, replicates - start)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(float).ravel()
        offsets = np.repeat(np.arange(size) * k2, n)  # replicate r's cells are r*k2 ... r*k2 + k2 - 1
        for o, p in zip(out, pairs, strict=True):
            codes = offsets + np.tile(np.asarray(p), size)
            o[start : start + size] = np.bincount(codes, weights=weights, minlength=size * k2).reshape(size, k2)
    return [o.reshape(-1, k, k) for o in out]


def metric_value(metric: str, y_true: Sequence[int], y_pred: Sequence[int], num_labels: int) -> float:
    pairs = _pairs(y_true, y_pred, num_labels)
    cm = np.bincount(pairs, minlength=num_labels * num_labels).reshape(1, num_labels, num_labels)
    return float(_metric_from_confusion(metric, cm)[0])


# ----------------------------------------------------------------------------- intervals


def wilson(k: int, n: int, level: float) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials (scipy's binomtest)."""
    if n == 0:
        return 0.0, 1.0
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def metric_interval(
    metric: str,
    y_true: Labels,
    y_pred: Labels,
    num_labels: int,
    level: float,
    *,
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = 0,
) -> Interval:
    """The metric on these rows with its ``level`` confidence interval (Wilson or bootstrap)."""
    n = len(y_true)
    value = metric_value(metric, y_true, y_pred, num_labels) if n else 0.0
    if metric in PROPORTIONS:
        correct = int(np.sum(np.asarray(y_true) == np.asarray(y_pred)))
        low, high = wilson(correct, n, level)
        return Interval(value, low, high, level, n, "wilson")
    if n == 0:
        return Interval(0.0, 0.0, 1.0 if metric != "mcc" else 1.0, level, 0, "bootstrap")
    pairs = _pairs(y_true, y_pred, num_labels)
    (confusions,) = _boot_confusions([pairs], num_labels, replicates, seed)
    draws = _metric_from_confusion(metric, confusions)
    alpha = 1.0 - level
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return Interval(value, float(min(low, value)), float(max(high, value)), level, n, f"bootstrap ({replicates})")


def paired_gain(
    metric: str,
    y_true: Sequence[int],
    pred_a: Sequence[int],
    pred_b: Sequence[int],
    num_labels: int,
    level: float,
    *,
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = 0,
) -> PairedGain:
    """Points model a gains over model b on the same rows, with a paired bootstrap interval.

    Both models are resampled with the same row weights, so a row that is hard for both counts in
    both and cancels out of the difference. For accuracy an exact McNemar test on the discordant
    rows gives a p-value as well.
    """
    n = len(y_true)
    if not (len(pred_a) == len(pred_b) == n) or n == 0:
        raise ValueError(f"paired_gain needs predictions of both models on the same {n} rows")
    pa, pb = _pairs(y_true, pred_a, num_labels), _pairs(y_true, pred_b, num_labels)
    point = metric_value(metric, y_true, pred_a, num_labels) - metric_value(metric, y_true, pred_b, num_labels)
    ca, cb = _boot_confusions([pa, pb], num_labels, replicates, seed)
    diff = _metric_from_confusion(metric, ca) - _metric_from_confusion(metric, cb)
    alpha = 1.0 - level
    low, high = np.quantile(diff, [alpha / 2, 1 - alpha / 2])
    p_value = None
    if metric in PROPORTIONS:
        t = np.asarray(y_true)
        a_right, b_right = np.asarray(pred_a) == t, np.asarray(pred_b) == t
        only_a, only_b = int(np.sum(a_right & ~b_right)), int(np.sum(b_right & ~a_right))
        if only_a + only_b:
            from scipy.stats import binomtest

            p_value = float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
        else:
            p_value = 1.0
    return PairedGain(
        point * 100, min(float(low), point) * 100, max(float(high), point) * 100, level, n, "paired bootstrap", p_value
    )


# ----------------------------------------------------------------------------- how many rows


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - (1 - level) / 2))


def rows_to_resolve(value: float, floor: float, level: float) -> int | None:
    """Rows an interval needs for ``value`` to be told apart from ``floor`` at ``level`` (normal approximation).

    The interval's half-width z·sqrt(p(1-p)/n) must be smaller than |value - floor|, so
    n > z²·p(1-p)/(value - floor)². For non-proportion metrics this is a rough guide (their
    variance is not p(1-p)). None when value equals the floor (no number of rows decides it).
    """
    gap = abs(value - floor)
    if gap < 1e-9:
        return None
    p = min(max(value, 1e-3), 1 - 1e-3)
    return int(math.ceil(_z(level) ** 2 * p * (1 - p) / gap**2))


def rows_for_margin(floor: float, margin: float, level: float) -> int:
    """Validation rows for an interval of half-width ``margin`` around a metric near ``floor``.

    With this many rows a model that is ``margin`` above (below) the floor gets a pass (fail) at
    ``level`` instead of "undecided".
    """
    p = min(max(floor, 0.05), 0.95)
    return int(math.ceil(_z(level) ** 2 * p * (1 - p) / margin**2))


def bonferroni(level: float, tests: int) -> float:
    """Per-test confidence level that keeps the family-wise level over ``tests`` decisions (Bonferroni)."""
    return 1.0 - (1.0 - level) / max(1, tests)
