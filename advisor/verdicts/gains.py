"""Gains with their paired uncertainty: what each rung bought over the baseline and the rung below.

Computed once, from the runs' predictions on the same validation rows, and handed to the report,
which only lays the numbers out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from advisor.acceptance import AcceptanceCriteria
from advisor.types import RunResult
from advisor.verdicts.stats import paired_gain

PFLOP = 1e15


def run_gains(
    baseline: RunResult,
    runs: Sequence[RunResult],
    val_labels: Sequence[int],
    num_labels: int,
    criteria: AcceptanceCriteria,
) -> dict[str, dict[str, Any]]:
    """Each run's gain over the baseline and over the best run of the rung below, paired on the same rows.

    Returns run_id -> {vs_baseline, vs_previous (with ``reference``, the run compared against),
    per_pflop, per_kwh (vs_previous divided by the run's own training PFLOPs / kWh, with the
    interval's ends divided the same way), best_of_rung}. A gain whose interval contains zero is
    marked ``distinguishable: false``; its per-unit figures carry the same caveat. The report only
    shows these numbers; it does not work out gains or best runs again.
    """
    metric, level = criteria.metric, criteria.confidence
    best_of: dict[str, RunResult] = {}
    for run in runs:
        if not (run.status == "ok" and metric in run.metrics and run.val_predictions):
            continue
        if run.candidate.name not in best_of or run.metrics[metric] > best_of[run.candidate.name].metrics[metric]:
            best_of[run.candidate.name] = run
    order = list(dict.fromkeys(r.candidate.name for r in runs if r.candidate.kind in ("probe", "finetune")))
    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        if not run.val_predictions or metric not in run.metrics:
            continue
        row: dict[str, Any] = {"best_of_rung": best_of.get(run.candidate.name) is run}
        if baseline.val_predictions:
            row["vs_baseline"] = paired_gain(
                metric, val_labels, run.val_predictions, baseline.val_predictions, num_labels, level
            ).to_dict()
        name = run.candidate.name
        below = order[: order.index(name)] if name in order else order
        ref = next((best_of[n] for n in reversed(below) if n in best_of and n != name), None)
        reference = ref if ref is not None else (baseline if baseline.val_predictions else None)
        if reference is not None:
            g = paired_gain(metric, val_labels, run.val_predictions, reference.val_predictions, num_labels, level)
            row["vs_previous"] = {**g.to_dict(), "reference": reference.run_id}
            for key, denom, prov in (
                ("per_pflop", run.cost.train_flops / PFLOP, run.cost.provenance.get("flops")),
                ("per_kwh", run.cost.energy_kwh, run.cost.provenance.get("energy")),
            ):
                if denom > 0 and prov not in (None, "not_applicable", "not_measured"):
                    row[key] = {
                        "value": g.points / denom,
                        "low": g.low / denom,
                        "high": g.high / denom,
                        "distinguishable": g.distinguishable,
                    }
        out[run.run_id] = row
    return out
