"""Forecast a rung's full-data metric from a small experiment on a fraction of the training data.

Pure functions, no I/O. Two estimates, used in this order:

* **Learning-curve transfer.** Rungs below this one were trained on the same fraction and on all
  the data; the mean step from fraction to full they showed is added to this rung's small score.
* **Power law.** With no rung below to learn from, the error rate is assumed to fall as a power of
  the training-set size, err(n) = err(f·n) · f^alpha, with alpha = 0.3: learning-curve exponents
  reported for text models sit around 0.1-0.4 (Hestness et al. 2017, "Deep Learning Scaling is
  Predictable, Empirically", arXiv:1712.00409); 0.3 leans optimistic so that a rung is not
  skipped on a pessimistic guess.

The uncertainty combines the binomial standard error of the validation score with the spread of
the steps seen on rungs below. A rung is skipped only when even the optimistic end
(mean + 2 sigma) misses the floor.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

#: power-law exponent for the error rate against training-set size (see module docstring)
POWER_LAW_ALPHA = 0.3


@dataclass(frozen=True)
class Forecast:
    """A forecast full-data metric with its uncertainty, and how it was made."""

    mean: float
    sigma: float
    method: str
    small_score: float
    fraction: float

    @property
    def optimistic(self) -> float:
        return min(1.0, self.mean + 2.0 * self.sigma)

    def to_dict(self) -> dict[str, float | str]:
        return {
            "mean": self.mean,
            "sigma": self.sigma,
            "optimistic": self.optimistic,
            "method": self.method,
            "small_score": self.small_score,
            "fraction": self.fraction,
        }


def binomial_sigma(score: float, n: int) -> float:
    """Standard error of an accuracy-like score measured on ``n`` examples."""
    p = min(max(score, 0.0), 1.0)
    return math.sqrt(max(p * (1.0 - p), 1e-4) / max(n, 1))


def forecast_full(
    small_score: float,
    fraction: float,
    n_validation: int,
    lower_rungs: Sequence[tuple[float, float]] = (),
) -> Forecast:
    """Forecast the metric this rung would reach on all the training data.

    Args:
        small_score: validation metric after training on ``fraction`` of the training data.
        fraction: the share of training data the small experiment used, in (0, 1).
        n_validation: validation examples (for the binomial error).
        lower_rungs: (small score, full score) pairs of rungs below, at the same fraction.

    Returns:
        The forecast; ``method`` says which estimate was used.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1). Got {fraction} instead.")
    noise = binomial_sigma(small_score, n_validation)
    if lower_rungs:
        steps = [full - small for small, full in lower_rungs]
        spread = statistics.pstdev(steps) if len(steps) > 1 else abs(steps[0]) / 2.0
        mean = small_score + statistics.fmean(steps)
        return Forecast(min(mean, 1.0), math.hypot(noise, spread), "learning-curve transfer", small_score, fraction)
    error = 1.0 - small_score
    mean = 1.0 - error * fraction**POWER_LAW_ALPHA
    # the guessed exponent is itself uncertain: count half the predicted step as spread
    return Forecast(mean, math.hypot(noise, (mean - small_score) / 2.0), "power law", small_score, fraction)


def forecast_curve(points: Sequence[tuple[int, float]], full_rows: int, n_validation: int) -> Forecast:
    """Forecast the metric a step reaches on ``full_rows`` training rows from its data-size rungs.

    Args:
        points: (training rows, validation metric) of the step's runs on growing prefixes.
        full_rows: rows of the whole training split.
        n_validation: validation examples (for the binomial error).

    With one size, the power law with the assumed exponent (:func:`forecast_full`). With two or
    more, the exponent is fitted: the error rate's least-squares slope against the rows on log
    scales, from the points' own noise (each score's binomial error, relative to its error rate)
    an uncertainty on that slope, which the forecast's spread carries out to ``full_rows``. A curve
    that did not fall is forecast not to fall (exponent 0), with the same spread: the optimistic
    end still allows for noise having hidden a gain.
    """
    last_rows, last = max(points)
    if len({n for n, _ in points}) < 2:
        return forecast_full(last, last_rows / full_rows, n_validation)
    xs = [math.log(n) for n, _ in points]
    errors = [max(1.0 - s, 1e-3) for _, s in points]
    ys = [math.log(e) for e in errors]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    # noise of log(error) at each point: sigma(error) / error
    var_y = [binomial_sigma(s, n_validation) ** 2 / e**2 for (_, s), e in zip(points, errors, strict=True)]
    slope_sigma = math.sqrt(sum(((x - mx) / sxx) ** 2 * v for x, v in zip(xs, var_y, strict=True)))
    alpha = max(0.0, -slope)
    ahead = math.log(full_rows / last_rows)
    error = (1.0 - last) * math.exp(-alpha * ahead)
    mean = 1.0 - error
    noise = binomial_sigma(last, n_validation)
    sigma = math.hypot(noise, error * ahead * slope_sigma, (mean - last) / 2.0)
    return Forecast(
        mean, sigma, f"learning curve over {len(points)} sizes (exponent {alpha:.2f})", last, last_rows / full_rows
    )
