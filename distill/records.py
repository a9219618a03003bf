"""The output folder's ledger (``advisor.store.ledger``): finished runs are read back, new ones written once.

A distillation's runs (teacher, controls, distilled students, int8 student) are records in
``<out>/ledger.sqlite``, and the phases that are not runs (teacher logits, latency, the test
scoring, work lost to a kill) are facts in its cost log: appended, never rewritten, so the same
command run again finishes from the ledger and every figure it reports is what was spent once.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from advisor.errors import RunDirError
from advisor.store.ledger import LEDGER_NAME, Ledger, locked
from advisor.types import Cost, RunResult
from distill.fingerprint import what_changed

#: how a cost fact came about: the work ran here, or ran and was lost to a kill or a crash
CostStatus = Literal["ran", "lost"]


class Runs:
    """The ledger when there is one: a finished record is read back, a new one written at once.

    Without a ledger (the advisor's compaction step, whose climb keeps its own) records and cost
    facts live in memory for the one call.
    """

    def __init__(self, ledger: Ledger | None, say: Callable[[str], None]) -> None:
        self.ledger, self.say = ledger, say
        self._costs: list[dict[str, Any]] = []

    def get(self, run_id: str) -> RunResult | None:
        run = self.ledger.finished(run_id) if self.ledger is not None else None
        if run is not None:
            self.say(f"{run_id}: read back from the ledger (not run again)")
        return run

    def has(self, run_id: str) -> bool:
        """Whether a finished record of ``run_id`` is in the ledger (quietly)."""
        return self.ledger is not None and self.ledger.finished(run_id) is not None

    def put(self, run: RunResult) -> RunResult:
        if self.ledger is not None:
            self.ledger.add(run)
        return run

    def meta(self, key: str) -> Any:
        return self.ledger.get_meta(key) if self.ledger is not None else None

    def set_meta(self, key: str, value: Any) -> None:
        if self.ledger is not None:
            self.ledger.set_meta(key, value)

    def folder(self, work_dir: Path, run: RunResult) -> Path:
        """Where ``run``'s weights are now: moved into ``student/`` once delivered, else its artifact.

        Raises:
            RunDirError: they were deleted (only models not delivered are).
        """
        moved = self.meta("moved") or {}
        for rel in (moved.get(str(run.artifact)), run.artifact):
            if rel and (work_dir / rel).exists():
                return work_dir / rel
        raise RunDirError(
            f"The weights of {run.run_id} are no longer in {work_dir} (a model not delivered is deleted). "
            "Add --restart to move that folder aside and start afresh."
        )

    def costs(self, phase: str | None = None, status: CostStatus | None = None) -> list[dict[str, Any]]:
        """Cost facts in the order they were logged, optionally of one phase and status."""
        facts = self.meta("cost_log") if self.ledger is not None else self._costs
        return [f for f in facts or [] if phase in (None, f["phase"]) and status in (None, f["status"])]

    def log_cost(self, phase: str, cost: Cost, status: CostStatus = "ran", **extra: Any) -> dict[str, Any]:
        """Append one fact: ``phase`` cost ``cost`` (``status`` "ran" or "lost"); returns it."""
        fact = {
            "id": extra.pop("id", None) or uuid.uuid4().hex,
            "phase": phase,
            "status": status,
            "cost": cost.to_dict(),
            **extra,
        }
        if self.ledger is None:
            self._costs.append(fact)
        else:
            self.ledger.set_meta("cost_log", [*self.costs(), fact])
        return fact

    def spent(self, phase: str, status: CostStatus = "ran") -> Cost | None:
        """The sum of a phase's facts of ``status``; None when there are none."""
        facts = self.costs(phase, status)
        return sum((Cost.from_dict(f["cost"]) for f in facts), Cost()) if facts else None


def move_aside(out: Path) -> Path:
    """Rename a used output folder to ``<out>.old-<n>`` (the first free n), so nothing is deleted."""
    n = 1
    while (aside := out.with_name(f"{out.name}.old-{n}")).exists():
        n += 1
    with locked(out):  # refuses while another distill uses it
        pass
    os.replace(out, aside)
    return aside


def open_ledger(out: Path, parts: Mapping[str, str]) -> Ledger:
    """The output folder's ledger; refuses one made from other data, models or settings (its runs
    would not apply), naming what changed.

    Raises:
        RunDirError: the folder's records were made from something else.
    """
    out.mkdir(parents=True, exist_ok=True)
    existed = (out / LEDGER_NAME).exists()
    ledger = Ledger(out)
    recorded = ledger.get_meta("fingerprint_parts")
    if recorded is None and existed and (ledger.all() or ledger.get_meta("fingerprint") is not None):
        ledger.close()
        raise RunDirError(
            f"{out} holds a distillation made by an earlier version of distill, which did not record what its data "
            "held. Pass a new --out, or add --restart to move that folder aside and start afresh."
        )
    changed = what_changed(recorded, parts) if recorded is not None else []
    if changed:
        ledger.close()
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise RunDirError(
            f"{out} holds a distillation of other data, models or settings ({shown} changed). Pass a new --out, "
            "or add --restart to move that folder aside and start afresh."
        )
    ledger.set_meta("fingerprint_parts", dict(parts))
    return ledger
