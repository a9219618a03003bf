"""Pure functions that judge runs: verdicts from intervals, gains, gain per unit of compute, metrics.

Nothing here reads files, prints or trains: every function takes records and returns values, so
the climb (``advisor.advise``) and the reports (``advisor.report.render``) agree on the numbers.

Gains are in *points* on a 0-100 scale (0.874 -> 0.901 is a gain of 2.7 points). Gain per unit
of compute always divides by the run's own training FLOPs or energy; where that denominator is
zero, not applicable (the TF-IDF baseline has no FLOPs) or was not measured, the ratio is None
rather than a misleading infinity.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from advisor.acceptance import AcceptanceCriteria
from advisor.errors import ConfigError
from advisor.outcome import Verdict, VerdictState
from advisor.types import Cost, RunResult
from advisor.verdicts.stats import PROPORTIONS, Interval, metric_interval, rows_to_resolve, wilson

#: metric name -> what it is; every name here is a key of :func:`compute_metrics`' result
SUPPORTED_METRICS: dict[str, str] = {
    "accuracy": "share of correct predictions",
    "macro_f1": "F1 averaged over classes, each class counting equally",
    "micro_f1": "F1 over all decisions pooled (equals accuracy for single-label data)",
    "weighted_f1": "F1 averaged over classes, weighted by class support",
    "f1": "F1 of the positive class (binary tasks only)",
    "precision": "precision of the positive class (binary tasks only)",
    "recall": "recall of the positive class (binary tasks only)",
    "macro_precision": "precision averaged over classes",
    "macro_recall": "recall averaged over classes",
    "balanced_accuracy": "recall averaged over classes (robust to class imbalance)",
    "mcc": "Matthews correlation coefficient (-1..1)",
}
#: metrics defined for two classes only; the positive class is the second label
BINARY_ONLY = ("f1", "precision", "recall")

PFLOP = 1e15
#: figures whose provenance makes a ratio meaningless
_NO_VALUE = ("not_applicable", "not_measured")


# ----------------------------------------------------------------------------- number formatting


def fmt_num(x: float) -> str:
    """At most three significant figures, no scientific notation for everyday magnitudes (41, 87.4, 0.0123)."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    if abs(x) >= 1e6 or abs(x) < 1e-4:
        return f"{x:.3g}"
    digits = max(0, 2 - math.floor(math.log10(abs(x))))
    text = f"{x:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def fmt_count(n: float) -> str:
    """A parameter count the way papers write it: 22.7M, 30M, 110M, 1.2k."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:g}"


# ----------------------------------------------------------------------------- verdicts


def run_interval(
    run: RunResult, metric: str, val_labels: Sequence[int], num_labels: int, level: float
) -> Interval | None:
    """The interval of ``run``'s validation ``metric`` at ``level``, from the best evidence the run has.

    In order: the baseline's cross-validated out-of-fold predictions over train + validation
    (:attr:`RunResult.cv`: many more rows, so a tighter interval); the run's own predictions on the
    validation rows; for an older record without predictions, a Wilson interval rebuilt from the
    point estimate and the number of rows (exact for accuracy, a rough guide for other metrics).
    None when the run has no such metric.
    """
    cv = run.cv
    if cv is not None and cv.labels:
        return metric_interval(metric, cv.labels, cv.predictions, num_labels, level)
    if run.val_predictions and len(run.val_predictions) == len(val_labels):
        return metric_interval(metric, val_labels, run.val_predictions, num_labels, level)
    value = run.metrics.get(metric)
    if value is None or not val_labels:
        return None
    n = len(val_labels)
    low, high = wilson(round(min(max(value, 0.0), 1.0) * n), n, level)
    method = "wilson" if metric in PROPORTIONS else "wilson from the point estimate (approximate)"
    return Interval(value, min(low, value), max(high, value), level, n, method)


def judge(
    run: RunResult,
    criteria: AcceptanceCriteria,
    interval: Interval | None = None,
    *,
    rule: str = "interval",
) -> Verdict:
    """Check one run against every criterion that applies to a single model.

    The metric floor is decided from ``interval`` (rule ``interval``): ``pass`` when its lower
    bound clears the floor, ``fail`` when its upper bound is below it, ``undecided`` in between.
    Rule ``point`` compares the point estimate alone (the rule greenladder used before intervals;
    kept for the reliability benchmark). Without an interval the interval rule cannot pass a run.
    ``max_params``, ``max_size_mb`` and ``max_latency_ms`` are measured, not estimated, and fail
    outright; a ceiling that is set but was not measured fails, since nobody can say the model meets
    it. A run that did not finish (status other than ``ok`` or ``budget``) fails on its status.
    Budgets and ``min_gain_per_pflop`` concern the whole climb, not a run.

    Reasons come failing ones first, so ``reasons[0]`` of a failing verdict is the first failure.
    ``failed`` names the criteria by their config key (``floor``, ``max_params``, ``max_size_mb``,
    ``max_latency_ms``, ``status``).
    """
    if rule not in ("interval", "point"):
        raise ValueError(f"rule must be 'interval' or 'point'. Got {rule!r}.")
    metric = criteria.metric
    value = run.metrics.get(metric)
    shortfall = max(0.0, criteria.floor - value) if value is not None else criteria.floor
    iv = interval.to_dict() if interval is not None else None
    if run.status not in ("ok", "budget") or (run.status == "budget" and value is None):
        why = f": {run.message}" if run.message else ""
        return Verdict(run.run_id, "fail", (f"run {run.status}{why}",), ("status",), shortfall, iv)

    checks = _Checks()
    _check_floor(checks, criteria, value, interval, rule)
    _check_params(checks, run, criteria)
    _check_ceilings(checks, run, criteria)
    reasons = tuple(r for _, r in checks.failing) + tuple(checks.open_reasons) + tuple(checks.passing)
    floor_met = value is not None and not checks.open_reasons and all(k != "floor" for k, _ in checks.failing)
    if checks.failing:
        failed = tuple(k for k, _ in checks.failing)
        return Verdict(run.run_id, "fail", reasons, failed, shortfall, iv, None, floor_met)
    state: VerdictState = "undecided" if checks.open_reasons else "pass"
    return Verdict(run.run_id, state, reasons, (), shortfall, iv, checks.rows_needed, floor_met)


@dataclass
class _Checks:
    """The reasons a verdict collects, criterion by criterion, in the order they were checked."""

    passing: list[str] = field(default_factory=list)
    failing: list[tuple[str, str]] = field(default_factory=list)  # (config key, reason)
    open_reasons: list[str] = field(default_factory=list)  # what leaves the verdict undecided
    rows_needed: int | None = None  # validation rows that would decide an undecided floor

    def check(self, key: str, ok: bool, reason: str) -> None:
        if ok:
            self.passing.append(reason)
        else:
            self.failing.append((key, reason))


def _check_floor(
    checks: _Checks, criteria: AcceptanceCriteria, value: float | None, interval: Interval | None, rule: str
) -> None:
    """The metric floor: by the point estimate (rule ``point``) or by the interval's bounds."""
    metric, floor = criteria.metric, criteria.floor
    if value is None:
        checks.check("floor", False, f"{metric} not measured")
    elif rule == "point":
        ok = value >= floor
        checks.check("floor", ok, f"{metric} {value:.3f} {'>=' if ok else '<'} {floor:.3f} (point estimate)")
    elif interval is None:
        checks.open_reasons.append(f"{metric} {value:.3f} has no interval: cannot show it clears {floor:.3f}")
    else:
        shown = f"{metric} {interval.text()} at {interval.level:.1%}"
        if interval.low >= floor:
            checks.check("floor", True, f"{shown}: lower bound >= {floor:.3f}")
        elif interval.high < floor:
            checks.check("floor", False, f"{shown}: upper bound < {floor:.3f}")
        else:
            checks.rows_needed = rows_to_resolve(value, floor, interval.level)
            more = f"; about {checks.rows_needed} validation rows would decide it" if checks.rows_needed else ""
            checks.open_reasons.append(f"{shown} straddles {floor:.3f}: undecided{more}")


def _check_params(checks: _Checks, run: RunResult, criteria: AcceptanceCriteria) -> None:
    """``max_params``, on the candidate's total count where known, else the measured footprint."""
    if criteria.max_params is None:
        return
    params = run.candidate.params_total if run.candidate.params_total is not None else run.footprint.params
    limit = fmt_count(criteria.max_params)
    if params is None:
        checks.check("max_params", False, f"params not measured (ceiling {limit})")
    else:
        ok = params <= criteria.max_params
        checks.check("max_params", ok, f"params {fmt_count(params)} {'<=' if ok else '>'} {limit}")


def _check_ceilings(checks: _Checks, run: RunResult, criteria: AcceptanceCriteria) -> None:
    """``max_size_mb`` and ``max_latency_ms``: measured, and failed outright when not measured."""
    ceilings = (
        ("max_size_mb", "size", run.footprint.size_mb, criteria.max_size_mb, "MB"),
        ("max_latency_ms", "p95 latency", run.footprint.latency_ms_p95, criteria.max_latency_ms, "ms"),
    )
    for key, label, measured, limit, unit in ceilings:
        if limit is None:
            continue
        if measured is None:
            checks.check(key, False, f"{label} not measured (ceiling {fmt_num(limit)} {unit})")
        else:
            ok = measured <= limit
            checks.check(key, ok, f"{label} {fmt_num(measured)} {unit} {'<=' if ok else '>'} {fmt_num(limit)} {unit}")


#: criteria a smaller (distilled) model can meet where this one does not
CEILINGS = frozenset({"max_params", "max_size_mb", "max_latency_ms"})


def only_ceilings_failed(verdict: Verdict) -> bool:
    """True when the run met the metric floor and failed only size/latency/parameter ceilings."""
    return verdict.state == "fail" and verdict.floor_met and set(verdict.failed) <= CEILINGS


def closest_failure(verdicts: Mapping[str, Verdict] | Iterable[Verdict]) -> str:
    """Say which run came closest to passing and what it missed, for "none passed" messages.

    Closest means: a run that trained (not failed/stopped) before one that did not, then an
    undecided run before a failed one, then the fewest criteria missed, then the smallest metric
    shortfall. An undecided run's message says how many validation rows would decide it.
    """
    best = closest_verdict(verdicts)
    if best is None:
        return "no run was judged"
    if best.passed:
        return f"{best.run_id} passed"
    if best.state == "undecided":
        return f"closest was {best.run_id}: {best.reasons[0]}"
    missed = "; ".join(best.reasons[: len(best.failed)])
    return f"closest was {best.run_id}: {missed}"


def closest_verdict(verdicts: Mapping[str, Verdict] | Iterable[Verdict]) -> Verdict | None:
    """The first passing verdict, else the one that came closest (see :func:`closest_failure`)."""
    items = list(verdicts.values()) if isinstance(verdicts, Mapping) else list(verdicts)
    if not items:
        return None
    passed = [v for v in items if v.passed]
    if passed:
        return passed[0]
    return min(items, key=lambda v: ("status" in v.failed, v.state != "undecided", len(v.failed), v.shortfall))


# ----------------------------------------------------------------------------- gains


def gain(a: RunResult, b: RunResult | None, metric: str) -> float | None:
    """Points (0-100 scale) that run ``a`` gains over run ``b`` on ``metric``; None if either lacks it."""
    if b is None:
        return None
    va, vb = a.metrics.get(metric), b.metrics.get(metric)
    if va is None or vb is None:
        return None
    return (va - vb) * 100.0


def _ratio(points: float | None, denominator: float, provenance: str | None) -> float | None:
    if points is None or denominator <= 0:
        return None
    if provenance is not None and all(p in _NO_VALUE for p in provenance.split("+")):
        return None
    return points / denominator


def gain_per_pflop(gain_points: float | None, cost: Cost) -> float | None:
    """Gain in points per PFLOP of *training* compute (``cost.train_flops``); None when not applicable."""
    return _ratio(gain_points, cost.train_flops / PFLOP, cost.provenance.get("flops"))


def gain_per_kwh(gain_points: float | None, cost: Cost) -> float | None:
    """Gain in points per kWh of energy (``cost.energy_kwh``, all devices); None when not measured."""
    return _ratio(gain_points, cost.energy_kwh, cost.provenance.get("energy"))


# ----------------------------------------------------------------------------- metrics


def closest_metrics(name: str) -> list[str]:
    """The supported metrics a mistyped ``name`` most likely meant, best first (empty when none is close).

    An abbreviation is matched by prefix before spelling (``acc`` is accuracy; difflib alone rates
    ``mcc`` closer), ignoring case, ``-`` for ``_`` and a word order like ``f1_macro``.
    """
    key = name.strip().lower().replace("-", "_")
    if key in SUPPORTED_METRICS:
        return [key]
    swapped = "_".join(reversed(key.split("_")))
    if swapped in SUPPORTED_METRICS:
        return [swapped]
    words = key.split("_")

    def abbreviates(metric: str) -> bool:  # "acc" of accuracy, "bal_acc" of balanced_accuracy
        parts = metric.split("_")
        return len(parts) >= len(words) and all(w and p.startswith(w) for w, p in zip(words, parts, strict=False))

    prefixed = [m for m in SUPPORTED_METRICS if abbreviates(m)]
    if prefixed:
        return prefixed
    return difflib.get_close_matches(key, list(SUPPORTED_METRICS), n=1)


def validate_metric_name(name: str, num_labels: int | None = None) -> None:
    """Raise ConfigError unless ``name`` is a supported metric (and fits ``num_labels`` classes)."""
    if name not in SUPPORTED_METRICS:
        close = closest_metrics(name)
        choices = f"{', '.join(close[:-1])} or {close[-1]}" if len(close) > 1 else "".join(close)
        hint = f" Did you mean {choices}?" if close else ""
        raise ConfigError(
            f"The criteria.metric must be one of {', '.join(SUPPORTED_METRICS)}. Got {name!r} instead.{hint}"
        )
    if name in BINARY_ONLY and num_labels is not None and num_labels != 2:
        raise ConfigError(
            f"The metric {name!r} is defined for two classes, but the data has {num_labels}. "
            f"Use macro_{name} (or macro_f1) instead."
        )


def _as_ids(values: Iterable[Any], label_names: Sequence[str]) -> list[int]:
    index = {name: i for i, name in enumerate(label_names)}
    out = []
    for v in values:
        if isinstance(v, str):
            if v not in index:
                raise ValueError(f"label {v!r} is not one of {list(label_names)}")
            out.append(index[v])
        else:
            out.append(int(v))
    return out


def compute_metrics(y_true: Iterable[Any], y_pred: Iterable[Any], label_names: Sequence[str]) -> dict[str, float]:
    """Every supported metric for one set of predictions (scikit-learn, no hub).

    Args:
        y_true: gold labels, shape (n,): ids indexing ``label_names`` (list or numpy array) or the
            names themselves.
        y_pred: predicted labels, shape (n,), same form.
        label_names: class names; with two classes the second is the positive class of f1,
            precision and recall, which are left out for more than two classes.
    """
    from sklearn import metrics as skm

    t, p = _as_ids(y_true, label_names), _as_ids(y_pred, label_names)
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} labels but y_pred has {len(p)}")
    if not t:
        raise ValueError("cannot compute metrics on zero examples")
    labels = list(range(len(label_names)))
    # zero_division=0: a class never predicted scores 0 rather than raising a warning per call
    common: dict[str, Any] = {"labels": labels, "zero_division": 0}
    out = {
        "accuracy": skm.accuracy_score(t, p),
        "macro_f1": skm.f1_score(t, p, average="macro", **common),
        "micro_f1": skm.f1_score(t, p, average="micro", **common),
        "weighted_f1": skm.f1_score(t, p, average="weighted", **common),
        "macro_precision": skm.precision_score(t, p, average="macro", **common),
        "macro_recall": skm.recall_score(t, p, average="macro", **common),
        # with one class present balanced accuracy is that class's recall, i.e. accuracy (and sklearn warns)
        "balanced_accuracy": skm.balanced_accuracy_score(t, p) if len(set(t)) > 1 else skm.accuracy_score(t, p),
        "mcc": skm.matthews_corrcoef(t, p),
    }
    if len(label_names) == 2:
        out["f1"] = skm.f1_score(t, p, average="binary", pos_label=1, zero_division=0)
        out["precision"] = skm.precision_score(t, p, average="binary", pos_label=1, zero_division=0)
        out["recall"] = skm.recall_score(t, p, average="binary", pos_label=1, zero_division=0)
    return {k: float(v) for k, v in out.items()}
