"""The record of one distillation and its headline numbers; ``distill.report`` renders it.

Retention and gains are computed here once, on the validation rows every model was scored on and
by the configured metric (``criteria.metric``), so the Markdown, the JSON and the model card cannot
disagree. The test split is scored once, for the delivered student (and its int8 form), never to
choose anything.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from advisor.types import Cost, RunResult
from advisor.verdicts.stats import metric_interval
from distill.verdict import gain_over

#: phase -> how its figure came about, when it is not simply "ran in this call"
Notes = Mapping[str, str]


@dataclass(frozen=True)
class DistillReport:
    """Everything one distillation produced; ``distill.report`` renders it, nothing here decides."""

    teacher: RunResult
    #: one distilled student per seed
    students: tuple[RunResult, ...]
    #: the same students trained without the teacher, same seeds and budget (empty if disabled)
    controls: tuple[RunResult, ...]
    #: the saved student after int8 quantisation, its metrics re-measured (None if not requested)
    quantized: RunResult | None
    #: phase -> Cost, each spent once and counted once: teacher (fine-tune when needed +
    #: evaluation), teacher_logits, distill, control, quantize, test, latency, and ``lost`` (work
    #: a kill or crash lost, done again since); the total is their sum
    phases: Mapping[str, Cost]
    #: model ("teacher", "student", "student_int8", "student_onnx") -> latency_ms_p50, latency_ms_p95
    latency: Mapping[str, Mapping[str, float]]
    #: retention, gain over control (paired interval), speed-ups, sizes: the headline numbers
    summary: Mapping[str, Any]
    #: run_id of the student that was saved (best validation metric among the seeds)
    saved_run: str
    student_dir: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    #: phase -> note, e.g. teacher_logits "reused from the cache: the pass that made it, counted once"
    notes: Notes = field(default_factory=dict)
    #: costs shown but not in the total: a cache made by another run (counted there)
    reused: Mapping[str, Cost] = field(default_factory=dict)
    #: the facts behind ``phases["lost"]``: which phase, where it stopped, what it had cost
    lost: tuple[Mapping[str, Any], ...] = ()

    @property
    def total_cost(self) -> Cost:
        return sum(self.phases.values(), Cost())

    @property
    def delivered(self) -> RunResult:
        """The saved student's record (with its test metrics once scored)."""
        return next(r for r in (*self.students, *self.controls) if r.run_id == self.saved_run)

    def to_dict(self) -> dict[str, Any]:
        return {
            "teacher": self.teacher.to_dict(),
            "students": [r.to_dict() for r in self.students],
            "controls": [r.to_dict() for r in self.controls],
            "quantized": self.quantized.to_dict() if self.quantized else None,
            "phases": {k: v.to_dict() for k, v in self.phases.items()},
            "phase_notes": dict(self.notes),
            "reused_not_counted": {k: v.to_dict() for k, v in self.reused.items()},
            "lost_to_interruption": [dict(f) for f in self.lost],
            "total_cost": self.total_cost.to_dict(),
            "latency": {k: dict(v) for k, v in self.latency.items()},
            "summary": dict(self.summary),
            "saved_run": self.saved_run,
            "student_dir": self.student_dir,
            "config": dict(self.config),
        }


def _gains(
    students: Sequence[RunResult],
    controls: Sequence[RunResult],
    metric: str,
    val_labels: Sequence[int],
    num_labels: int,
    level: float,
) -> dict[str, dict[str, Any]]:
    """seed -> the distilled student's paired gain over the control of the same seed (validation rows)."""
    by_seed = {r.hyperparameters["seed"]: r for r in controls if r.val_predictions}
    out = {}
    for r in students:
        control = by_seed.get(r.hyperparameters["seed"])
        if control is not None and r.val_predictions:
            out[str(r.hyperparameters["seed"])] = gain_over(r, control, metric, val_labels, num_labels, level).to_dict()
    return out


def summarise(
    teacher: RunResult,
    students: Sequence[RunResult],
    controls: Sequence[RunResult],
    quantized: RunResult | None,
    latency: Mapping[str, Mapping[str, float]],
    sizes: Mapping[str, int],
    saved_run: str,
    *,
    metric: str,
    val_labels: Sequence[int],
    num_labels: int,
    level: float,
) -> dict[str, Any]:
    """The headline numbers, on the validation rows by ``metric``: the saved student's retention of
    the teacher's score, and its paired gain over the control of its seed (with every seed's)."""
    saved = next(r for r in (*students, *controls) if r.run_id == saved_run)
    t = teacher.metrics.get(metric)
    s = saved.metrics.get(metric)
    out: dict[str, Any] = {"metric": metric, "seeds": len(students or controls), "saved_run": saved_run}
    out["validation_rows"] = len(val_labels)
    out["teacher_score"] = t
    out["student_score"] = s
    out["retention"] = s / t if s is not None and t else None
    out["student_mean_score"] = statistics.fmean(r.metrics[metric] for r in students) if students else None
    out["control_mean_score"] = statistics.fmean(r.metrics[metric] for r in controls) if controls else None
    out["validation_intervals"] = {
        r.run_id: metric_interval(metric, val_labels, r.val_predictions, num_labels, level).to_dict()
        for r in (teacher, *students, *controls, *([quantized] if quantized is not None else []))
        if len(r.val_predictions) == len(val_labels) and val_labels
    }
    out["gain_per_seed"] = _gains(students, controls, metric, val_labels, num_labels, level)
    seed = str(saved.hyperparameters.get("seed"))
    out["gain_over_control"] = out["gain_per_seed"].get(seed) if saved.candidate.kind == "distilled" else None
    if quantized is not None:
        q = quantized.metrics.get(metric)
        out["student_int8_score"] = q
        out["retention_int8"] = q / t if q is not None and t else None
    out["params_teacher"] = teacher.candidate.params_total
    out["params_student"] = saved.candidate.params_total
    out["size_mb"] = {k: v / 1e6 for k, v in sizes.items()}
    t_lat = latency.get("teacher", {})
    for name in ("student", "student_int8", "student_onnx"):
        lat = latency.get(name)
        if lat and t_lat:
            out[f"speedup_p50_{name}"] = t_lat["latency_ms_p50"] / lat["latency_ms_p50"]
    return out
