"""The compaction step's decisions, as pure functions of its evidence.

Distillation (``distill``, and the climb's compaction step through it) trains, for each seed, the
no-teacher control first (the cheap path: the same student on the labels alone) and then the
distilled student. After the first control, the teacher is compared with it on the same validation
rows (``distill.decide.teacher_vs_control``); with ``decide_first``, a teacher that does not clear
its bar sends the run down the cheaper path: no distilled student is paid for, and the control is
kept. A run the budget stopped ends the step: no further student starts. Which student is kept is
decided here too, by the metric the step is judged by.

The executor (``distill/pipeline.py``) reads back or trains what :func:`next_compaction` returns and
records it; these functions read nothing else, so every choice is tested without training
(tests/test_policy.py). :func:`advisor.climb.policy.decide` hands a :class:`CompactionEvidence` here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from advisor.climb.evidence import Recorded, Stop
from advisor.runkey import RunKey
from advisor.types import RunResult

#: the teacher-vs-control check's answer (``distill.decide.TeacherCheck.verdict``)
TeacherVerdict = Literal["teacher_better", "no_evidence", "control_better"]


@dataclass(frozen=True)
class TrainStudent(Recorded):
    """Train (or read back, when the ledger holds it) the student or control ``key``: role
    ``control`` or ``distilled``, number the seed."""

    key: RunKey


@dataclass(frozen=True)
class CompactionEvidence:
    """What the next compaction decision reads.

    Attributes:
        seeds: the student seeds, in order (``distill.seeds``).
        control: whether a no-teacher control is trained per seed (``distill.control``).
        decide_first: whether a teacher that does not clear its bar stops the distilled students.
        runs: the students and controls so far, in the order they were made.
        teacher_check: the teacher-vs-control verdict, None until the first control is compared.
        transfer_rows: texts beyond the labelled rows that only the teacher can label (unlabelled or
            augmented): with any, a teacher level with its control still adds signal.
    """

    seeds: tuple[int, ...]
    control: bool
    decide_first: bool
    runs: tuple[RunResult, ...]
    teacher_check: TeacherVerdict | None = None
    transfer_rows: int = 0


def worth_distilling(verdict: TeacherVerdict, transfer_rows: int) -> bool:
    """Whether to pay for distilled students: without a transfer set, only when the teacher is shown
    ahead of the control; with one, unless the teacher is shown behind it."""
    if transfer_rows > 0:
        return verdict != "control_better"
    return verdict == "teacher_better"


def cheaper_path(evidence: CompactionEvidence) -> bool:
    """Whether the step keeps the control: ``decide_first`` and a teacher that did not clear its bar."""
    e = evidence
    return e.decide_first and e.teacher_check is not None and not worth_distilling(e.teacher_check, e.transfer_rows)


def needs_teacher_check(evidence: CompactionEvidence) -> bool:
    """Whether the teacher is now compared with the control: once, after the first control that
    finished (one the budget stopped or that failed has nothing to compare)."""
    return evidence.teacher_check is None and any(r.key.role == "control" and r.status == "ok" for r in evidence.runs)


def next_compaction(evidence: CompactionEvidence) -> TrainStudent | Stop:
    """The next student or control to train, or the stop of the step.

    Per seed the control comes first, then the distilled student (none on the cheaper path). A run
    the budget stopped ends the step (``budget``); otherwise it ends once every seed is done
    (``done``). A control is not trained twice, nor a student whose key the runs already hold.
    """
    e = evidence
    stopped = next((r for r in e.runs if r.status == "budget"), None)
    if stopped is not None:
        return Stop(f"the budget stopped {stopped.run_id}: no further student starts", None, "budget")
    done = {r.key for r in e.runs}
    cheaper = cheaper_path(e)
    roles: tuple[Literal["control", "distilled"], ...] = ("control", "distilled") if e.control else ("distilled",)
    for seed in e.seeds:
        for role in roles:
            if role == "distilled" and cheaper:
                continue
            key = RunKey(role, number=seed)
            if key not in done:
                return TrainStudent(key)
    why = "the teacher did not clear its bar: the control is kept" if cheaper else "every seed was trained"
    return Stop(why, None, "done")


def student_to_keep(students: Sequence[RunResult], controls: Sequence[RunResult], metric: str) -> RunResult:
    """The student the step delivers: the best distilled student by ``metric`` (the metric the step is
    judged by); without one (the cheaper path, or the budget stopped before any), the best control.

    Raises:
        ValueError: neither a student nor a control was trained.
    """
    pool = [r for r in students if metric in r.metrics] or [r for r in controls if metric in r.metrics]
    if not pool:
        raise ValueError("no student or control finished with the metric: nothing to keep")
    return max(pool, key=lambda r: r.metrics[metric])
