"""Judge the delivered student as ``advise`` judges a rung, and put its gain over the control in numbers.

Pure functions of the records: nothing here reads files, trains or prints.

- The verdict is :func:`advisor.verdicts.criteria.judge` with :func:`advisor.verdicts.criteria.run_interval` on the
  validation rows: ``pass`` when the metric's lower bound clears the floor and every ceiling holds,
  ``fail`` when the upper bound is below it or a ceiling is broken, ``undecided`` in between. A
  retention floor (``min_retention``) becomes the floor ``min_retention x`` the teacher's measured
  validation score: the teacher's score is taken as it was measured, the student's uncertainty
  decides. With a ``--target`` floor as well, the higher of the two applies.
- The gain over the no-teacher control is :func:`advisor.verdicts.stats.paired_gain` (paired bootstrap over
  the same validation rows, McNemar's exact p for accuracy), and per PFLOP and per kWh it is divided
  by everything the distillation spent (its total: teacher, logits, students, controls, lost work),
  interval ends divided the same way, None where the denominator was not measured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from advisor.acceptance import AcceptanceCriteria
from advisor.outcome import Verdict
from advisor.types import Cost, Footprint, RunResult
from advisor.verdicts.criteria import PFLOP, judge, run_interval
from advisor.verdicts.stats import PairedGain, paired_gain
from distill.config import DistillCriteria


def has_criteria(c: DistillCriteria) -> bool:
    """Whether anything was asked of the student (a floor, a retention, a ceiling)."""
    return any(v is not None for v in (c.floor, c.min_retention, c.max_latency_ms, c.max_size_mb))


def acceptance(c: DistillCriteria, teacher_score: float | None) -> tuple[AcceptanceCriteria, str]:
    """The advisor's criteria for these, and in words where the metric floor comes from."""
    floors: list[tuple[float, str]] = []
    if c.floor is not None:
        floors.append((c.floor, f"--target {c.metric}={c.floor:g}"))
    if c.min_retention is not None and teacher_score is not None:
        floors.append((c.min_retention * teacher_score, f"retention {c.min_retention:g} x teacher {teacher_score:.3f}"))
    floor, source = max(floors) if floors else (0.0, "no metric floor set")
    criteria = AcceptanceCriteria(
        metric=c.metric,
        floor=min(max(floor, 0.0), 1.0),
        max_size_mb=c.max_size_mb,
        max_latency_ms=c.max_latency_ms,
        confidence=c.confidence,
    )
    return criteria, source


def judge_form(
    run: RunResult,
    c: DistillCriteria,
    teacher_score: float | None,
    footprint: Footprint,
    val_labels: Sequence[int],
    num_labels: int,
) -> dict[str, Any]:
    """One delivered form (the student, its int8 form) judged: the verdict and where its floor came from."""
    criteria, source = acceptance(c, teacher_score)
    judged = dataclasses.replace(run, footprint=footprint)
    interval = run_interval(judged, c.metric, val_labels, num_labels, c.confidence)
    verdict: Verdict = judge(judged, criteria, interval)
    return {**verdict.to_dict(), "floor": criteria.floor, "floor_source": source}


def gain_over(
    student: RunResult, control: RunResult, metric: str, val_labels: Sequence[int], num_labels: int, level: float
) -> PairedGain:
    """Points the student gains over the control on the same validation rows, with a paired interval."""
    return paired_gain(metric, val_labels, student.val_predictions, control.val_predictions, num_labels, level)


def per_unit(gain: Mapping[str, Any], total: Cost) -> dict[str, Any]:
    """The gain (a :class:`PairedGain` as a dict) per PFLOP and per kWh of ``total``, each with its
    denominator and provenance; None for a denominator that is zero or was not measured."""
    out: dict[str, Any] = {}
    for key, denominator, provenance in (
        ("per_pflop", total.flops / PFLOP, total.provenance.get("flops")),
        ("per_kwh", total.energy_kwh, total.provenance.get("energy")),
    ):
        parts = (provenance or "not_measured").split("+")
        if denominator <= 0 or all(p in ("not_applicable", "not_measured") for p in parts):
            out[key] = None
            continue
        out[key] = {
            "value": gain["points"] / denominator,
            "low": gain["low"] / denominator,
            "high": gain["high"] / denominator,
            "denominator": denominator,
            "provenance": provenance,
            "distinguishable": gain["distinguishable"],
        }
    return out
