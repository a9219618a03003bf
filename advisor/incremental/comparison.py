"""What continuing an earlier model saved: its cost against from-scratch training, and paired metric differences.

Pure functions (no I/O, no training). The from-scratch cost is either measured (a run trained in
the same run directory) or forecast from the earlier run's measured cost, and says which. Two
models judged on the same validation rows are compared by a paired bootstrap over those rows: each
resample draws rows with replacement and scores both models on the same draw, so the interval
reflects the differences between the models, not the row-to-row spread they share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from advisor.types import Cost, RunResult
from advisor.verdicts.stats import BOOTSTRAP_REPLICATES, Labels, metric_value, paired_gain

#: Cost figures a forecast scales with the training tokens
_SCALED = (
    "wall_s",
    "cpu_s",
    "train_flops",
    "eval_flops",
    "energy_cpu_kwh",
    "energy_gpu_kwh",
    "energy_ram_kwh",
    "emissions_g",
)


def paired_difference(y_true: Labels, a: Labels, b: Labels, metric: str, k: int, seed: int = 0) -> dict[str, Any]:
    """Metric of model A minus model B on the same rows, with a 95 % paired-bootstrap interval
    (:func:`advisor.verdicts.stats.paired_gain`).

    Args:
        y_true, a, b: label ids of the same n rows (truth, A's predictions, B's), shape (n,).
        metric: the metric's name; k: the number of labels; seed: the bootstrap's seed.

    Returns:
        ``{"metric", "a", "b", "difference", "low", "high", "n", "method"}`` in the metric's units
        (None when n = 0).
    """
    n = len(y_true)
    if not n == len(a) == len(b):
        raise ValueError(
            f"y_true and both models' predictions must have one label per row; got {n}, {len(a)}, {len(b)}"
        )
    method = f"paired bootstrap over rows, {BOOTSTRAP_REPLICATES} resamples"
    out: dict[str, Any] = {"metric": metric, "n": n, "method": method}
    if n == 0:
        return {**out, "a": None, "b": None, "difference": None, "low": None, "high": None}
    g = paired_gain(metric, y_true, a, b, k, 0.95, seed=seed)
    score_a, score_b = metric_value(metric, y_true, a, k), metric_value(metric, y_true, b, k)
    return {
        **out,
        "a": score_a,
        "b": score_b,
        "difference": score_a - score_b,
        "low": g.low / 100,
        "high": g.high / 100,
    }


def forecast_scratch(
    earlier: RunResult, old_train: Mapping[str, Any], new_train: Mapping[str, Any]
) -> tuple[Cost, str]:
    """The earlier run's measured cost scaled to the expanded data, and how it was scaled.

    Training FLOPs are ~6·N·tokens per epoch (Kaplan et al. 2020): for the same rung, settings and
    epochs they scale with the training tokens, here rows x mean words per row (from the data
    summaries, ``{"rows", "mean_words"}``). Time, energy and emissions are scaled alike, to first
    order; the evaluation passes with them.
    """
    old_rows = float(earlier.train_examples or old_train.get("rows") or 0)
    old_words, new_words = float(old_train.get("mean_words") or 0), float(new_train.get("mean_words") or 0)
    if not old_rows or not old_words:
        factor, basis = 1.0, "forecast: the earlier run's measured cost, unscaled (its data summary is missing)"
    else:
        factor = (float(new_train["rows"]) * new_words) / (old_rows * old_words)
        basis = (
            f"forecast: the earlier run's measured cost x {factor:.2f} = ({new_train['rows']} rows x {new_words:g} "
            f"words) / ({old_rows:.0f} rows x {old_words:g} words), as training FLOPs scale with tokens x epochs"
        )
    return scaled_cost(earlier.cost, factor), basis


def scaled_cost(c: Cost, factor: float) -> Cost:
    """``c`` with its time, FLOPs, energy and emissions multiplied by ``factor`` (peaks and tokens left out)."""
    scaled = {k: getattr(c, k) * factor for k in _SCALED}
    return Cost(**scaled, device=c.device, location=c.location, provenance=dict(c.provenance))


def compare(
    metric: str,
    num_labels: int,
    y_val: Sequence[int],
    rows: Sequence[int],
    continued: Sequence[RunResult],
    best: RunResult | None,
    scratch: RunResult | None,
    scratch_forecast: tuple[Cost, str] | None,
    others: Sequence[RunResult],
    seed: int = 0,
) -> dict[str, Any]:
    """What continuing cost against from-scratch training, and its metric against each comparable run.

    Args:
        y_val: the validation labels, shape (n,).
        rows: the validation rows the comparisons use (those no compared model trained on).
        continued: every run of the continuation (their costs are summed: tuning is part of its cost).
        best: the continuation's best finished run, compared on ``rows``.
        scratch: the same rung trained from its checkpoint on the same data (measured), or None.
        scratch_forecast: (cost, basis) used when ``scratch`` is None.
        others: further runs to compare ``best`` with (the earlier model as it stands).
    """
    cost = sum((r.cost for r in continued), Cost())
    if scratch is not None:
        scratch_cost, kind, basis = scratch.cost, "measured", f"measured: {scratch.run_id}, trained in this run"
    elif scratch_forecast is not None:
        (scratch_cost, basis), kind = scratch_forecast, "forecast"
    else:
        raise ValueError("compare needs the scratch run or its forecast")
    out: dict[str, Any] = {
        "continued_runs": [r.run_id for r in continued],
        "best": best.run_id if best is not None else None,
        "incremental_cost": cost.to_dict(),
        "from_scratch_cost": scratch_cost.to_dict(),
        "from_scratch": {"kind": kind, "basis": basis},
        "flops_ratio": cost.flops / scratch_cost.flops if scratch_cost.flops else None,
        "wall_ratio": cost.wall_s / scratch_cost.wall_s if scratch_cost.wall_s else None,
        "differences": [],
    }
    for other in [*([scratch] if scratch is not None else []), *others]:
        if best is None or not other.val_predictions or not best.val_predictions:
            continue
        d = paired_difference(
            [y_val[i] for i in rows],
            [best.val_predictions[i] for i in rows],
            [other.val_predictions[i] for i in rows],
            metric,
            num_labels,
            seed=seed,
        )
        out["differences"].append({"run": best.run_id, "against": other.run_id, **d})
    return out
