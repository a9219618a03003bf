"""What a climb concludes: a :class:`Verdict` per run, and the :class:`Report` that gathers them.

The last two records of the flow described in :mod:`advisor.types`: a :class:`~advisor.types.RunResult`
judged against :class:`~advisor.acceptance.AcceptanceCriteria` gives a :class:`Verdict`, and the runs,
verdicts, recommendation and total cost of one ``advise`` make a :class:`Report`. Both check their
own invariants on construction and, like every record, hold read-only mappings (:mod:`advisor.frozen`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from advisor.acceptance import AcceptanceCriteria
from advisor.frozen import freeze, thaw
from advisor.types import Cost, RunResult

VerdictState = Literal["pass", "fail", "undecided"]


@dataclass(frozen=True)
class Verdict:
    """Whether one run meets the criteria, decided from the metric's interval, with one reason per criterion.

    ``state`` is ``pass`` when the metric's lower confidence bound clears the floor and every
    ceiling holds, ``fail`` when a ceiling is broken, the run did not finish, or the upper bound is
    below the floor, and ``undecided`` when the interval straddles the floor (the validation rows
    cannot tell). ``failed`` names the criteria that were not met; ``shortfall`` is how far the
    point estimate is below the floor (0 when it meets it), used to say which run came closest.
    ``interval`` is the floor metric's interval at the level the decision used (``level``; lower
    than ``confidence`` only when corrected for several candidates judged on the same rows);
    ``rows_needed`` says, for an undecided run, how many validation rows would decide it.
    """

    run_id: str
    state: VerdictState
    reasons: tuple[str, ...]
    failed: tuple[str, ...] = ()
    shortfall: float = 0.0
    interval: Mapping[str, Any] | None = None
    rows_needed: int | None = None
    #: the metric floor alone is met (by the lower bound; by the point estimate under the point rule)
    floor_met: bool = False

    def __post_init__(self) -> None:
        if self.state not in ("pass", "fail", "undecided"):
            raise ValueError(f"Verdict {self.run_id}: state must be pass/fail/undecided. Got {self.state!r}.")
        if self.state != "fail" and self.failed:
            raise ValueError(f"Verdict {self.run_id}: a {self.state!r} verdict cannot list failed criteria.")
        if self.state == "fail" and not self.failed:
            raise ValueError(f"Verdict {self.run_id}: a failing verdict must list the failed criteria.")
        object.__setattr__(self, "reasons", tuple(self.reasons))
        object.__setattr__(self, "failed", tuple(self.failed))
        if self.interval is not None:
            object.__setattr__(self, "interval", freeze(self.interval))

    @property
    def passed(self) -> bool:
        return self.state == "pass"

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "state": self.state,
            "passed": self.passed,
            "reasons": list(self.reasons),
            "failed": list(self.failed),
            "shortfall": self.shortfall,
            "interval": thaw(self.interval),
            "rows_needed": self.rows_needed,
            "floor_met": self.floor_met,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        """The verdict from :meth:`to_dict`'s dict (``passed`` is derived, not read)."""
        return cls(
            run_id=d["run_id"],
            state=d["state"],
            reasons=tuple(d.get("reasons", ())),
            failed=tuple(d.get("failed", ())),
            shortfall=float(d.get("shortfall", 0.0)),
            interval=d.get("interval"),
            rows_needed=d.get("rows_needed"),
            floor_met=bool(d.get("floor_met", False)),
        )


REPORT_SCHEMA_VERSION = 3


@dataclass(frozen=True)
class Report:
    """Everything one ``advise`` produced: the input to every report format.

    ``recommendation`` is the run_id of the recommended run, or None when no run met the criteria;
    ``stop_reason`` says in words why the climb stopped; ``outcome`` how it ended (``met``,
    ``not_met``, ``budget``); ``closest`` the run that came closest when none passed; ``next_cost``
    what the step a budget refused would have cost. report.json carries these three under
    ``details``, as it always has; a report built with them there reads them into the fields.
    """

    task: str
    dataset: Mapping[str, Any]
    criteria: AcceptanceCriteria
    baseline: RunResult | None
    runs: tuple[RunResult, ...]
    verdicts: Mapping[str, Verdict]
    recommendation: str | None
    stop_reason: str
    total_cost: Cost
    config: Mapping[str, Any] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    outcome: str | None = None
    closest: str | None = None
    next_cost: Cost | None = None

    def __post_init__(self) -> None:
        details = dict(self.details)
        outcome, closest, nxt = (
            details.pop("outcome", None),
            details.pop("closest", None),
            details.pop("next_cost", None),
        )
        if outcome is not None and self.outcome is None:
            object.__setattr__(self, "outcome", str(outcome))
        if closest is not None and self.closest is None:
            object.__setattr__(self, "closest", str(closest))
        if nxt is not None and self.next_cost is None:
            object.__setattr__(self, "next_cost", nxt if isinstance(nxt, Cost) else Cost.from_dict(nxt))
        object.__setattr__(self, "details", details)
        object.__setattr__(self, "runs", tuple(self.runs))
        for name in ("dataset", "verdicts", "config", "details"):
            object.__setattr__(self, name, freeze(getattr(self, name)))
        ids = {r.run_id for r in self.runs}
        if self.baseline is not None:
            ids.add(self.baseline.run_id)
        if self.recommendation is not None and self.recommendation not in ids:
            raise ValueError(f"Report: recommendation {self.recommendation!r} is not one of its runs.")

    def run(self, run_id: str) -> RunResult:
        for r in ((self.baseline,) if self.baseline else ()) + tuple(self.runs):
            if r.run_id == run_id:
                return r
        raise KeyError(run_id)

    @property
    def recommended(self) -> RunResult | None:
        return self.run(self.recommendation) if self.recommendation else None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Report:
        """The report back from its report.json (:func:`advisor.report.render.to_json`): what ``--from``
        reads. Each run's entry carries its verdict; the per-run gains and the table rows, derived
        when the report was written, are not read back. Reports of earlier schema versions read back
        too (their runs through :meth:`RunResult.from_dict`).

        Raises:
            KeyError, TypeError, ValueError: ``d`` is not a report this version can read.
        """
        baseline = d.get("baseline")
        entries = [*([baseline] if baseline else []), *d.get("runs", [])]
        rec = d.get("recommendation")
        return cls(
            task=str(d.get("task", "text-classification")),
            dataset=d.get("dataset", {}),
            criteria=AcceptanceCriteria.from_dict(d.get("criteria", {})),
            baseline=RunResult.from_dict(baseline) if baseline else None,
            runs=tuple(RunResult.from_dict(e) for e in d.get("runs", [])),
            verdicts={e["run_id"]: Verdict.from_dict(e["verdict"]) for e in entries if e.get("verdict")},
            recommendation=str(rec["run_id"]) if rec else None,
            stop_reason=str(d.get("stop_reason", "")),
            total_cost=Cost.from_dict(d.get("total_cost", {})),
            config=d.get("config", {}),
            details=d.get("details", {}),
        )
