"""How the climb reaches distillation: an interface its caller supplies.

When a rung meets the metric floor and fails only ceilings (p95 latency, size on disk,
parameters), a larger rung will not rescue it: larger rungs are slower and bigger still. The climb
then hands that run to a :data:`Distiller`, which returns the student's RunResult, judged like any
rung. The climb does not import ``distill`` (the dependency runs one way): the entry points that
compose the product, the ``advise`` command (:mod:`advisor.cli`) and :func:`advisor.select_model`,
hand ``advise`` greenladder's distiller (``distill.compact.distil_run``), so a checkout used
without ``pip install`` distils too. ``advise`` called with no distiller records that distillation
was unavailable, and why, instead of failing.

The climb passes the distiller its budget watch (``callbacks``, an
:class:`advisor.climb.budget.BudgetCallback` when a budget is set): the distiller charges it with the work
it does outside a Trainer, tells it what judging the student costs, and hands it to the Trainer
that trains the student, so a distillation stops before the step that would cross the budget and
comes back with status ``budget``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from advisor.config.settings import Config
from advisor.data.task import TaskData
from advisor.runkey import RunKey
from advisor.types import Candidate, Cost, RunResult

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DistilRequest:
    """What the climb hands a distiller: the run to distil, the task, and where the student goes.

    Attributes:
        teacher_run: the run that met the floor but not a ceiling (its saved model is the teacher).
        data: the task's splits.
        config: the climb's configuration.
        run_dir: the run directory (the student is saved under ``runs/<run_id>/``).
        key: the student's identity (role "student", its step the teacher run's id).
    """

    teacher_run: RunResult
    data: TaskData
    config: Config
    run_dir: Path
    key: RunKey

    @property
    def run_id(self) -> str:
        return self.key.run_id


class Distiller(Protocol):
    """(request, progress, Trainer callbacks) -> the student's run (status ``budget`` when a callback
    stopped it)."""

    def __call__(
        self, request: DistilRequest, progress: Progress | None = None, callbacks: Sequence[Any] = ()
    ) -> RunResult: ...


#: why a climb handed no distiller records its students as unavailable
NO_DISTILLER = (
    "advise() was given no distiller: the advise command and select_model pass greenladder's own "
    "(distill.compact.distil_run); pass it as advise(..., distiller=distil_run), or set "
    "ladder.distil_on_ceiling: false"
)


def unavailable(why: str = NO_DISTILLER) -> Distiller:
    """A distiller that trains nothing: its student record (status ``failed``, so a rerun given a
    distiller distils instead of reading it back) says why."""

    def distil_unavailable(
        request: DistilRequest, progress: Progress | None = None, callbacks: Sequence[Any] = ()
    ) -> RunResult:
        if progress is not None:
            progress(f"{request.run_id}: distillation unavailable: {why}")
        # failed, not skipped: the ledger retries failed runs, so a rerun after installing the
        # distiller distils instead of reading this record back
        teacher = request.teacher_run
        message = f"distillation unavailable: {why}"
        return unjudged_student(teacher, request.key, str(teacher.artifact), "failed", message, Cost())

    return distil_unavailable


def unjudged_student(
    teacher_run: RunResult,
    key: RunKey,
    source: str,
    status: str,
    message: str,
    cost: Cost,
    details: dict[str, Any] | None = None,
) -> RunResult:
    """The record of a student that was never trained to the end (no distiller, a refused pass): no metrics."""
    return RunResult(
        key=key,
        candidate=Candidate(
            name=f"{teacher_run.candidate.name}-student",
            kind="distilled",
            source=source,
            parent_run=teacher_run.run_id,
        ),
        hyperparameters={},
        status=status,  # type: ignore[arg-type]
        metrics={},
        cost=cost,
        message=message,
        details=details or {},
    )
