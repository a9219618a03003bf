"""The acceptance criteria: the bar a model must clear, and what the search may spend to find it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AcceptanceCriteria:
    """The bar a model must clear, and what the search may spend to find it.

    Attributes:
        metric: validation metric the floor applies to ("accuracy", "macro_f1", "f1", ...).
        floor: the metric value a model must reach.
        max_params: ceiling on total parameters.
        max_size_mb: ceiling on the saved model's size on disk.
        max_latency_ms: ceiling on p95 latency at batch 1, in milliseconds, on ``latency_device``.
        latency_device: where the model will be deployed and its latency is measured: "cpu"
            (default) or "cuda" / "cuda:N" (needs that GPU on the machine that trains).
        budget_kwh: total energy the whole search may use.
        budget_pflops: total compute the whole search may use, in PFLOPs (1e15 FLOPs).
        budget_seconds: total wall time the whole search may use.
        min_gain_per_pflop: metric points (0-100 scale) gained per PFLOP below which the next rung
            is not worth climbing.
        confidence: level of every interval, and of the decisions made with them: a run passes
            when the lower bound of its metric's interval clears the floor. 0.95 by default, the
            level users read "95% interval" as; the chance of recommending a model whose true
            metric is below the floor is then at most 5% (2.5% one-sided per decision, Bonferroni-
            corrected over the candidates judged on the same validation rows).
    """

    metric: str = "accuracy"
    floor: float = 0.0
    max_params: int | None = None
    max_size_mb: float | None = None
    max_latency_ms: float | None = None
    budget_kwh: float | None = None
    budget_pflops: float | None = None
    budget_seconds: float | None = None
    min_gain_per_pflop: float | None = None
    confidence: float = 0.95
    latency_device: str = "cpu"

    def problems(self) -> list[str]:
        """Every reason these criteria cannot be met by construction (empty when fine)."""
        out = []
        if not 0.0 <= self.floor <= 1.0:
            out.append(f"The metric floor must be between 0 and 1. Got {self.floor} instead.")
        for name in ("max_params", "max_size_mb", "max_latency_ms", "budget_kwh", "budget_pflops", "budget_seconds"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                out.append(f"The criterion {name} must be positive (or left unset). Got {value} instead.")
        if not 0.5 <= self.confidence < 1.0:
            out.append(f"The criterion confidence must be in [0.5, 1). Got {self.confidence} instead.")
        if self.min_gain_per_pflop is not None and self.min_gain_per_pflop < 0:
            out.append(f"The criterion min_gain_per_pflop must be >= 0. Got {self.min_gain_per_pflop} instead.")
        device = self.latency_device
        if not (device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
            out.append(f"The criterion latency_device must be cpu, cuda or cuda:N. Got {device!r} instead.")
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AcceptanceCriteria:
        """The criteria from :meth:`to_dict`'s dict; keys a later version added are left at their defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
