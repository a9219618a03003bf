"""The frozen records passed between modules.

Data flows one way: a :class:`Candidate` is trained (metered into a :class:`Cost`) into a
:class:`RunResult` (carrying its :mod:`advisor.evaluations`), judged against
:class:`~advisor.acceptance.AcceptanceCriteria` into a :class:`~advisor.outcome.Verdict`, and all of
it is gathered into a :class:`~advisor.outcome.Report`. Records check their own invariants on construction, so an
inconsistent one cannot exist, and each converts to and from plain JSON-able dicts.

Records are frozen all the way down (:mod:`advisor.frozen`): ``run.metrics["accuracy"] = 1`` or
``run.details["forecast"]["x"] = ...`` raises TypeError instead of changing a record others hold.
Build a changed copy instead: ``dataclasses.replace(run, details={**run.details, "x": 1})``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from advisor.evaluations import CrossValidation, Evaluation
from advisor.frozen import freeze, thaw
from advisor.runkey import RunKey

#: Where a figure came from. ``measured``: hardware counters (RAPL, NVML) or a clock;
#: ``estimated``: a power model from TDP and load; ``analytic``: a formula from the model shape and
#: the tokens processed; ``not_applicable``: the figure has no meaning for this work (FLOPs of a
#: TF-IDF fit); ``not_measured``: it could have been measured but was not (metering disabled).
Provenance = Literal["measured", "estimated", "analytic", "not_applicable", "not_measured"]
PROVENANCES: tuple[str, ...] = ("measured", "estimated", "analytic", "not_applicable", "not_measured")

RunStatus = Literal["ok", "stopped", "budget", "failed", "skipped"]
CandidateKind = Literal["baseline", "probe", "finetune", "incremental", "distilled"]
CANDIDATE_KINDS: tuple[str, ...] = ("baseline", "probe", "finetune", "incremental", "distilled")

#: the figures of a Cost that are summed when costs are added
SUMMED = (
    "wall_s",
    "cpu_s",
    "train_flops",
    "eval_flops",
    "inference_flops",
    "padding_flops",
    "tokens",
    "padded_tokens",
    "energy_cpu_kwh",
    "energy_gpu_kwh",
    "energy_ram_kwh",
    "emissions_g",
)
#: the figures of a Cost for which the sum of two costs keeps the larger value
MAXED = ("peak_rss_mb", "peak_gpu_mem_mb")


def _merge_provenance(a: str, b: str) -> str:
    """Provenance of a sum: the same label if both agree, else both labels joined by '+'."""
    if a == b:
        return a
    parts = sorted(set(a.split("+")) | set(b.split("+")))
    return "+".join(parts)


@dataclass(frozen=True)
class Cost:
    """What one piece of work cost, and where every figure came from.

    Costs add up (``a + b``): times, FLOPs, tokens, energy and emissions are summed, peaks keep the
    larger value, and provenance labels are merged ("analytic+not_applicable" when a FLOPs total
    mixes a formula with a baseline that has no FLOPs).
    """

    wall_s: float = 0.0
    cpu_s: float = 0.0
    train_flops: float = 0.0
    eval_flops: float = 0.0
    inference_flops: float = 0.0
    #: FLOPs spent on padding tokens (already included in the three FLOPs figures above)
    padding_flops: float = 0.0
    #: real (non-padding) tokens processed
    tokens: int = 0
    #: padding tokens processed
    padded_tokens: int = 0
    energy_cpu_kwh: float = 0.0
    energy_gpu_kwh: float = 0.0
    energy_ram_kwh: float = 0.0
    emissions_g: float = 0.0
    peak_rss_mb: float = 0.0
    peak_gpu_mem_mb: float = 0.0
    #: mean GPU utilisation in percent, None where no GPU was used
    gpu_util_avg: float | None = None
    #: e.g. "cpu (2 threads)" or "cuda:0 NVIDIA H100"
    device: str = ""
    #: grid location the emissions were computed for (ISO country code or cloud region)
    location: str = ""
    #: figure group -> provenance; groups are "time", "flops", "energy", "emissions", "memory"
    provenance: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in SUMMED + MAXED:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
                raise ValueError(f"Cost.{name} must be a non-negative number. Got {value!r} instead.")
        for group, label in self.provenance.items():
            if any(part not in PROVENANCES for part in label.split("+")):
                raise ValueError(f"Cost.provenance[{group!r}] must be made of {PROVENANCES}. Got {label!r}.")
        object.__setattr__(self, "provenance", freeze(self.provenance))

    @property
    def flops(self) -> float:
        """All FLOPs: training + evaluation + inference."""
        return self.train_flops + self.eval_flops + self.inference_flops

    @property
    def energy_kwh(self) -> float:
        """All energy: CPU + GPU + RAM."""
        return self.energy_cpu_kwh + self.energy_gpu_kwh + self.energy_ram_kwh

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        values: dict[str, Any] = {n: getattr(self, n) + getattr(other, n) for n in SUMMED}
        values.update({n: max(getattr(self, n), getattr(other, n)) for n in MAXED})
        utils = [u for u in (self.gpu_util_avg, other.gpu_util_avg) if u is not None]
        values["gpu_util_avg"] = sum(utils) / len(utils) if utils else None
        values["device"] = (
            self.device
            if self.device == other.device
            else ", ".join(d for d in dict.fromkeys((self.device, other.device)) if d)
        )
        values["location"] = self.location or other.location
        prov = dict(self.provenance)
        for group, label in other.provenance.items():
            prov[group] = _merge_provenance(prov[group], label) if group in prov else label
        values["provenance"] = prov
        return Cost(**values)

    def __radd__(self, other: object) -> Cost:
        # lets sum(costs) start from 0
        if other == 0:
            return self
        return NotImplemented  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: thaw(getattr(self, f.name)) for f in dataclasses.fields(self)}
        d["flops"] = self.flops
        d["energy_kwh"] = self.energy_kwh
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Cost:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Candidate:
    """What to train: one rung of a ladder, the baseline, or a student.

    ``source`` is a local folder or a hub id; the baseline has source "tfidf".
    """

    name: str
    kind: CandidateKind
    source: str
    params_total: int | None = None
    params_non_embedding: int | None = None
    layers: int | None = None
    hidden: int | None = None
    #: the run this candidate continues from (incremental training, distillation teacher)
    parent_run: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("Candidate.name must be a non-empty string.")
        if self.kind not in CANDIDATE_KINDS:
            raise ValueError(f"Candidate.kind must be one of {'/'.join(CANDIDATE_KINDS)}. Got {self.kind!r}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Candidate:
        return cls(**dict(d))


#: a figure measured after training; None when it was not measured
Measured = float | None

#: RunResult.details keys that ledgers written before :class:`Footprint` existed hold its figures in
FOOTPRINT_KEYS = ("size_mb", "latency_ms_p50", "latency_ms_p95", "params", "latency_device")


@dataclass(frozen=True)
class Footprint:
    """What a saved model costs to keep and to serve, as measured after training (None: not measured).

    Attributes:
        size_mb: the saved model on disk, in MB (1e6 bytes).
        latency_ms_p50: median latency of one prediction at batch 1 (tokenising included), in ms.
        latency_ms_p95: its 95th percentile, what ``max_latency_ms`` is checked against.
        params: parameters of the model as saved (TF-IDF: the linear model's weights).
        latency_device: where the latency was measured, e.g. "cpu".
    """

    size_mb: Measured = None
    latency_ms_p50: Measured = None
    latency_ms_p95: Measured = None
    params: int | None = None
    latency_device: str | None = None

    def __post_init__(self) -> None:
        for name in ("size_mb", "latency_ms_p50", "latency_ms_p95", "params"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or math.isnan(value) or value < 0):
                raise ValueError(f"Footprint.{name} must be a number >= 0 or None. Got {value!r} instead.")
        if self.params is not None:
            object.__setattr__(self, "params", int(self.params))
        for name in ("size_mb", "latency_ms_p50", "latency_ms_p95"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, float(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Footprint:
        return cls(**{k: d[k] for k in FOOTPRINT_KEYS if d.get(k) is not None})


@dataclass(frozen=True)
class RunResult:
    """One finished piece of training work and everything known about it.

    Invariants: an ``ok`` run has validation metrics; a ``failed`` or ``skipped`` run has none and
    says why in ``message``; a ``stopped`` run (a health rule or the pruner fired) or a ``budget``
    run (stopped before it would cross a budget) names the reason in ``message`` and may carry the
    metrics measured before it stopped.
    """

    #: who the run is (its role, step and number); :attr:`run_id` is made from it
    key: RunKey
    candidate: Candidate
    hyperparameters: Mapping[str, Any]
    status: RunStatus
    #: validation metrics, e.g. {"accuracy": 0.91, "macro_f1": 0.90}
    metrics: Mapping[str, float]
    cost: Cost
    #: path of the saved model, relative to the run directory, or None
    artifact: str | None = None
    message: str | None = None
    #: test metrics: only for the baseline and the recommendation, never used for choices
    test_metrics: Mapping[str, float] = field(default_factory=dict)
    #: free-form extras: rule that fired and its numbers, forecasts, warm-start origin ...
    details: Mapping[str, Any] = field(default_factory=dict)
    #: size on disk, latency and parameters of the saved model (what the ceilings are checked against)
    footprint: Footprint = field(default_factory=Footprint)
    #: predicted label id of every validation row, in the split's order, from the weights that were
    #: judged: paired comparisons between runs (same rows) and intervals are computed from these
    val_predictions: tuple[int, ...] = ()
    #: predicted label of every test row (the baseline and the recommendation only)
    test_predictions: tuple[int, ...] = ()
    #: split -> metric -> interval ({value, low, high, level, n, method}) for each split scored
    intervals: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    #: the baseline's or a probe's cross-validation, when it completed (written as ``details.cv``)
    cv: CrossValidation | None = None
    #: training rows the model was fitted on (written as ``details.train_examples``)
    train_examples: int | None = None
    #: each evaluation while it trained, in order (written as ``details.eval_history``)
    evaluations: tuple[Evaluation, ...] = ()

    def __post_init__(self) -> None:
        self._typed_from_details()
        if not isinstance(self.key, RunKey):
            raise ValueError(f"RunResult.key must be a RunKey. Got {self.key!r}.")
        if self.status not in ("ok", "stopped", "budget", "failed", "skipped"):
            raise ValueError(f"RunResult.status must be ok/stopped/budget/failed/skipped. Got {self.status!r}.")
        if self.status == "ok" and not self.metrics:
            raise ValueError(f"RunResult {self.run_id}: an 'ok' run must have metrics.")
        if self.status in ("failed", "skipped"):
            if self.metrics:
                raise ValueError(f"RunResult {self.run_id}: a {self.status!r} run cannot have metrics.")
            if not self.message:
                raise ValueError(f"RunResult {self.run_id}: a {self.status!r} run must say why in message.")
        if self.status in ("stopped", "budget") and not self.message:
            raise ValueError(f"RunResult {self.run_id}: a {self.status!r} run must name the reason in message.")
        if self.val_predictions and self.status in ("failed", "skipped"):
            raise ValueError(f"RunResult {self.run_id}: a {self.status!r} run cannot have predictions.")
        for name, value in {**self.metrics, **self.test_metrics}.items():
            if not isinstance(value, (int, float)) or math.isnan(value):
                raise ValueError(f"RunResult {self.run_id}: metric {name!r} must be a number. Got {value!r}.")
        for name in ("hyperparameters", "metrics", "test_metrics", "details", "intervals"):
            object.__setattr__(self, name, freeze(getattr(self, name)))
        object.__setattr__(self, "val_predictions", tuple(int(p) for p in self.val_predictions))
        object.__setattr__(self, "test_predictions", tuple(int(p) for p in self.test_predictions))

    def _typed_from_details(self) -> None:
        """A record written before ``cv``, ``train_examples`` and ``evaluations`` were fields (or built
        the old way) holds them in ``details``: they move to their fields, read-only and typed."""
        details = dict(self.details)
        cv, rows, history = (
            details.pop("cv", None),
            details.pop("train_examples", None),
            details.pop("eval_history", None),
        )
        if cv and self.cv is None:
            object.__setattr__(self, "cv", cv if isinstance(cv, CrossValidation) else CrossValidation.from_dict(cv))
        if rows is not None and self.train_examples is None:
            object.__setattr__(self, "train_examples", int(rows))
        if history and not self.evaluations:
            evaluations = (h if isinstance(h, Evaluation) else Evaluation.from_dict(h) for h in history)
            object.__setattr__(self, "evaluations", tuple(evaluations))
        object.__setattr__(self, "evaluations", tuple(self.evaluations))
        object.__setattr__(self, "details", details)

    @property
    def run_id(self) -> str:
        """The run's id, made from its :attr:`key`."""
        return self.key.run_id

    def _details_dict(self) -> dict[str, Any]:
        """``details`` as report.json has always carried it: the typed fields written back in."""
        out = thaw(self.details)
        if self.cv is not None:
            out["cv"] = self.cv.to_dict()
        if self.train_examples is not None:
            out["train_examples"] = self.train_examples
        if self.evaluations:
            out["eval_history"] = [e.to_dict() for e in self.evaluations]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "key": self.key.to_dict(),
            "candidate": self.candidate.to_dict(),
            "hyperparameters": thaw(self.hyperparameters),
            "status": self.status,
            "metrics": thaw(self.metrics),
            "test_metrics": thaw(self.test_metrics),
            "cost": self.cost.to_dict(),
            "artifact": self.artifact,
            "message": self.message,
            "details": self._details_dict(),
            "footprint": self.footprint.to_dict(),
            "intervals": thaw(self.intervals),
            "val_predictions": list(self.val_predictions),
            "test_predictions": list(self.test_predictions),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunResult:
        """The record from :meth:`to_dict`'s dict; also one written before ``footprint`` existed,
        whose size, latency and parameters are read out of ``details``, or before ``key`` existed,
        whose key is read from its id (:meth:`RunKey.from_legacy_id`)."""
        details = dict(d.get("details", {}))
        if "footprint" in d:
            footprint = Footprint.from_dict(d["footprint"])
        else:
            footprint = Footprint.from_dict({k: details.pop(k) for k in FOOTPRINT_KEYS if k in details})
        key = RunKey.from_dict(d["key"]) if "key" in d else RunKey.from_legacy_id(d["run_id"])
        return cls(
            key=key,
            candidate=Candidate.from_dict(d["candidate"]),
            hyperparameters=d.get("hyperparameters", {}),
            status=d["status"],
            metrics=d.get("metrics", {}),
            cost=Cost.from_dict(d.get("cost", {})),
            artifact=d.get("artifact"),
            message=d.get("message"),
            test_metrics=d.get("test_metrics", {}),
            details=details,
            footprint=footprint,
            val_predictions=tuple(d.get("val_predictions", ())),
            test_predictions=tuple(d.get("test_predictions", ())),
            intervals=d.get("intervals", {}),
        )
