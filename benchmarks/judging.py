"""How a benchmark judges a method's runs: with the product's own verdict, and cells that say what is undefined.

Every method of ``select_models.py`` (greenladder, the grid, optuna, FLAML) is judged the way
``advise`` judges a run: the interval of its validation metric (:func:`advisor.verdicts.criteria.run_interval`:
the baseline's cross-validation, else the run's own predictions on the validation rows) at
``criteria.confidence``, then :func:`advisor.verdicts.criteria.judge` (``pass`` when the lower bound clears the
floor, ``fail`` when the upper bound is below it, ``undecided`` in between). A pick made outside
``train_run`` (FLAML's) is wrapped in a :class:`~advisor.types.RunResult` with its validation
predictions, so it goes through the very same two functions.

Nothing here trains or reads files: each function takes records and returns values or table cells.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from advisor.acceptance import AcceptanceCriteria
from advisor.outcome import Verdict
from advisor.runkey import RunKey
from advisor.types import Candidate, Cost, RunResult
from advisor.verdicts.criteria import closest_verdict, judge, run_interval


def judge_run(run: RunResult, criteria: AcceptanceCriteria, val_labels: Sequence[int], num_labels: int) -> Verdict:
    """The product's verdict on one run: its interval at ``criteria.confidence``, then ``judge``."""
    interval = run_interval(run, criteria.metric, val_labels, num_labels, criteria.confidence)
    return judge(run, criteria, interval)


def judge_runs(
    runs: Sequence[RunResult], criteria: AcceptanceCriteria, val_labels: Sequence[int], num_labels: int
) -> dict[str, Verdict]:
    """Every candidate run judged (a ``-small`` experiment on a share of the data is not a candidate, as in ``advise``)."""
    return {r.run_id: judge_run(r, criteria, val_labels, num_labels) for r in runs if r.key.role != "small"}


def predictions_run(
    key: RunKey,
    rung: str,
    source: str,
    hyperparameters: Mapping[str, Any],
    metrics: Mapping[str, float],
    val_predictions: Sequence[int],
) -> RunResult:
    """A finished run made outside ``train_run`` (FLAML's pick) as a record ``judge`` takes: its metrics and predictions."""
    candidate = Candidate(name=rung, kind="finetune", source=source)
    hp = {k: v for k, v in hyperparameters.items() if v is not None}
    return RunResult(key, candidate, hp, "ok", dict(metrics), Cost(), val_predictions=tuple(val_predictions))


def evidence(run: RunResult, verdict: Verdict | None) -> dict[str, Any]:
    """What a reader needs to check one row's verdict: the run, its settings, metrics, interval and reasons."""
    return {
        "run_id": run.run_id,
        "rung": run.candidate.name,
        "status": run.status,
        "hyperparameters": dict(run.hyperparameters),
        "metrics": dict(run.metrics),
        "verdict": verdict.to_dict() if verdict is not None else None,
    }


def closest_evidence(runs: Sequence[RunResult], verdicts: Mapping[str, Verdict]) -> dict[str, Any] | None:
    """The evidence of the run that passed first or came closest (:func:`advisor.verdicts.criteria.closest_verdict`)."""
    best = closest_verdict(verdicts)
    if best is None:
        return None
    run = next(r for r in runs if r.run_id == best.run_id)
    return evidence(run, best)


def verdict_cell(verdict: Mapping[str, Any] | None) -> str:
    """``yes`` / ``no`` / ``undecided`` for a verdict (as ``Verdict.to_dict``), ``—`` when nothing was judged."""
    if not verdict:
        return "—"
    return {"pass": "yes", "fail": "no", "undecided": "undecided"}[str(verdict["state"])]


def interval_cell(value: float | None, verdict: Mapping[str, Any] | None) -> str:
    """``0.950 [0.917, 0.972]``: the validation metric with the interval the verdict used; the value alone without one.

    The TF-IDF baseline is judged on its cross-validation (more rows), whose estimate differs from its
    validation score: ``0.688; cv 0.621 [0.533, 0.709]``.
    """
    if value is None:
        return "—"
    iv = (verdict or {}).get("interval")
    if not iv:
        return f"{value:.3f}"
    bounds = f"[{iv['low']:.3f}, {iv['high']:.3f}]"
    if f"{float(iv['value']):.3f}" != f"{value:.3f}":
        return f"{value:.3f}; cv {float(iv['value']):.3f} {bounds}"
    return f"{value:.3f} {bounds}"


def ratio_check(ratio: float | None, limit: float, undefined: str) -> tuple[Any, str]:
    """(value cell, verdict cell) of a "ratio ≤ limit" target; an undefined ratio is ``n/a (<why>)``, never MISSED."""
    if ratio is None:
        return f"n/a ({undefined})", "n/a"
    return ratio, "met" if ratio <= limit else "MISSED"
