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
