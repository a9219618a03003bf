"""The record of one distillation and its headline numbers; ``distill.report`` renders it.

Retention and gains are computed here once, from the runs' test metrics (means over seeds), so the
Markdown, the JSON and the model card cannot disagree.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from advisor.types import Cost, RunResult

#: the metric retention and gains are computed on
METRIC = "accuracy"


@dataclass(frozen=True)
class DistillReport:
    """Everything one distillation produced; ``distill.report`` renders it, nothing here decides."""

    teacher: RunResult
    #: one distilled student per seed
    students: tuple[RunResult, ...]
    #: the same students trained without the teacher, same seeds and budget (empty if disabled)
    controls: tuple[RunResult, ...]
    #: the saved student after int8 quantisation, accuracy re-measured (None if not requested)
    quantized: RunResult | None
    #: phase -> Cost: teacher (fine-tune when needed + evaluation), teacher_logits, distill, control,
    #: quantize, latency
    phases: Mapping[str, Cost]
    #: model ("teacher", "student", "student_int8", "student_onnx") -> latency_ms_p50, latency_ms_p95
    latency: Mapping[str, Mapping[str, float]]
    #: retention, gain over control, speed-ups, sizes: the headline numbers
    summary: Mapping[str, Any]
    #: run_id of the student that was saved (best validation metric among the seeds)
    saved_run: str
    student_dir: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def total_cost(self) -> Cost:
        return sum(self.phases.values(), Cost())

    def to_dict(self) -> dict[str, Any]:
        return {
            "teacher": self.teacher.to_dict(),
            "students": [r.to_dict() for r in self.students],
            "controls": [r.to_dict() for r in self.controls],
            "quantized": self.quantized.to_dict() if self.quantized else None,
            "phases": {k: v.to_dict() for k, v in self.phases.items()},
            "total_cost": self.total_cost.to_dict(),
            "latency": {k: dict(v) for k, v in self.latency.items()},
            "summary": dict(self.summary),
            "saved_run": self.saved_run,
            "student_dir": self.student_dir,
            "config": dict(self.config),
        }


def summarise(
    teacher: RunResult,
    students: Sequence[RunResult],
    controls: Sequence[RunResult],
    quantized: RunResult | None,
    latency: Mapping[str, Mapping[str, float]],
    sizes: Mapping[str, int],
    saved_run: str,
) -> dict[str, Any]:
    """The headline numbers; retention and gains use test metrics, means over seeds."""

    def mean(runs: Sequence[RunResult], metric: str) -> float | None:
        return statistics.fmean(r.test_metrics[metric] for r in runs) if runs else None

    out: dict[str, Any] = {"metric": METRIC, "seeds": len(students), "saved_run": saved_run}
    for metric in (METRIC, "macro_f1"):
        t = teacher.test_metrics[metric]
        s = mean(students, metric)
        c = mean(controls, metric)
        out[f"teacher_{metric}"] = t
        out[f"student_{metric}"] = s
        out[f"control_{metric}"] = c
        out[f"retention_{metric}"] = s / t if s is not None and t > 0 else None
        out[f"gain_over_control_{metric}"] = s - c if s is not None and c is not None else None
        if quantized is not None:
            q = quantized.test_metrics[metric]
            out[f"student_int8_{metric}"] = q
            out[f"retention_int8_{metric}"] = q / t if t > 0 else None
    by_seed = {r.hyperparameters["seed"]: r.test_metrics[METRIC] for r in controls}
    out["gain_per_seed"] = {
        str(r.hyperparameters["seed"]): r.test_metrics[METRIC] - by_seed[r.hyperparameters["seed"]]
        for r in students
        if r.hyperparameters["seed"] in by_seed
    }
    out["params_teacher"] = teacher.candidate.params_total
    out["params_student"] = next((r.candidate.params_total for r in (*students, *controls)), None)
    out["size_mb"] = {k: v / 1e6 for k, v in sizes.items()}
    t_lat = latency.get("teacher", {})
    for name in ("student", "student_int8", "student_onnx"):
        lat = latency.get(name)
        if lat and t_lat:
            out[f"speedup_p50_{name}"] = t_lat["latency_ms_p50"] / lat["latency_ms_p50"]
    return out
