"""Who a run is: the step it belongs to, its role there and its number, as typed fields.

A run id (``small-t2``, ``baseline``, ``tiny-t1-student``) is made from a :class:`RunKey` here and
nowhere else, and no code reads a role or a number back out of an id: decisions read the key. The one
exception is :meth:`RunKey.from_legacy_id`, for records written before keys existed (a
``report.json`` or ledger of an earlier version), which carry only the id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

Role = Literal[
    "baseline",  # the TF-IDF baseline
    "probe",  # a frozen encoder with a linear head (step: the encoder's rung)
    "trial",  # a fine-tune trial of a rung (number: 1, 2, ...)
    "small",  # a rung's small experiment on a fraction of the training rows
    "skipped",  # a step skipped on a forecast (its small experiment's, or its learning curve's)
    "sized",  # a data-size rung: a step on the first rows of the training split (step: the full step; number: rows)
    "student",  # the climb's compaction of a too-big run (step: the teacher run's id)
    "earlier",  # --from: the earlier model judged on the new data (step: its rung)
    "continuation",  # --from: a continuation trial (number: 1, 2, ...)
    "scratch",  # --from: the same rung trained from its pre-trained checkpoint on the new data
    "teacher",  # distill: the teacher fine-tuned by the distill command
    "distilled",  # distill: a student trained on the teacher's logits (number: its seed)
    "control",  # distill: the same student trained without the teacher (number: its seed)
    "quantized",  # distill: the delivered student's int8 form
]
ROLES: tuple[str, ...] = get_args(Role)

#: how each role's id is written: the only place run ids are made
_FORMS: dict[str, str] = {
    "baseline": "baseline",
    "probe": "{step}-probe",
    "trial": "{step}-t{number}",
    "small": "{step}-small",
    "skipped": "{step}-skipped",
    "sized": "{step}-n{number}",
    "student": "{step}-student",
    "earlier": "{step}-earlier",
    "continuation": "{step}-c{number}",
    "scratch": "{step}-scratch",
    "teacher": "teacher",
    "distilled": "distilled-seed{number}",
    "control": "control-seed{number}",
    "quantized": "student-int8",
}


@dataclass(frozen=True)
class RunKey:
    """The identity of one run.

    Attributes:
        role: what the run is (:data:`Role`).
        step: what it belongs to: the rung of a trial, small experiment, skip, continuation; the
            encoder's rung of a probe; the teacher run's id of a climb's student; empty for roles
            that stand alone (baseline, teacher, distilled, control, quantized).
        number: the trial or continuation number (from 1), a distill student's seed (from 0), a
            data-size rung's training rows; None
            for roles that have none.
    """

    role: Role
    step: str = ""
    number: int | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"RunKey.role must be one of {ROLES}. Got {self.role!r}.")
        form = _FORMS[self.role]
        if ("{step}" in form) != bool(self.step):
            need = "needs a step" if "{step}" in form else "takes no step"
            raise ValueError(f"RunKey: a {self.role!r} run {need}. Got step={self.step!r}.")
        if ("{number}" in form) != (self.number is not None):
            need = "needs a number" if "{number}" in form else "takes no number"
            raise ValueError(f"RunKey: a {self.role!r} run {need}. Got number={self.number!r}.")
        if self.number is not None and self.number < 0:
            raise ValueError(f"RunKey.number must be >= 0. Got {self.number}.")

    @property
    def run_id(self) -> str:
        return _FORMS[self.role].format(step=self.step, number=self.number)

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "step": self.step, "number": self.number}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunKey:
        number = d.get("number")
        return cls(cast(Role, d["role"]), str(d.get("step", "")), int(number) if number is not None else None)

    @classmethod
    def from_legacy_id(cls, run_id: str) -> RunKey:
        """The key of a record written before keys were stored (it has only its id): the one reader
        of ids, for old files. Raises ValueError for an id no form makes."""
        for role, form in _FORMS.items():
            pattern = re.escape(form).replace(r"\{step\}", "(?P<step>.+)").replace(r"\{number\}", r"(?P<number>\d+)")
            m = re.fullmatch(pattern, run_id)
            if m is not None:
                parts = m.groupdict()
                number = int(parts["number"]) if parts.get("number") is not None else None
                return cls(cast(Role, role), parts.get("step") or "", number)
        raise ValueError(f"{run_id!r} is not a run id greenladder writes")


def trial(rung: str, number: int) -> RunKey:
    return RunKey("trial", rung, number)


def probe(rung: str) -> RunKey:
    return RunKey("probe", rung)


def small(rung: str) -> RunKey:
    return RunKey("small", rung)


def skipped(rung: str) -> RunKey:
    return RunKey("skipped", rung)


def sized(step: str, rows: int) -> RunKey:
    """A data-size rung: ``step`` (a rung's fine-tune, or a probe's step name) on ``rows`` training rows."""
    return RunKey("sized", step, rows)


def student(teacher_run_id: str) -> RunKey:
    return RunKey("student", teacher_run_id)


BASELINE = RunKey("baseline")
