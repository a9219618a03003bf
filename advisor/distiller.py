"""How the climb reaches distillation: an interface its caller supplies, found without an import.

When a rung meets the metric floor and fails only ceilings (p95 latency, size on disk,
parameters), a larger rung will not rescue it: larger rungs are slower and bigger still. The climb
then hands that run to a :data:`Distiller`, which returns the student's RunResult, judged like any
rung. ``advisor`` does not import ``distill`` (the dependency runs one way): the default distiller
is the one a package declares under the entry-point group ``greenladder.distillers`` (greenladder
declares ``distill.compact:distil_run`` in its pyproject.toml), and without one the climb records
that distillation was unavailable instead of failing.

The climb passes the distiller its budget watch (``callbacks``, an
:class:`advisor.budget.BudgetCallback` when a budget is set): the distiller charges it with the work
it does outside a Trainer, tells it what judging the student costs, and hands it to the Trainer
that trains the student, so a distillation stops before the step that would cross the budget and
comes back with status ``budget``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from advisor.config import Config
from advisor.data import TaskData
from advisor.outcome import Verdict
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
        run_id: the student's run id.
    """

    teacher_run: RunResult
    data: TaskData
    config: Config
    run_dir: Path
    run_id: str


class Distiller(Protocol):
    """(request, progress, Trainer callbacks) -> the student's run (status ``budget`` when a callback
    stopped it)."""

    def __call__(
        self, request: DistilRequest, progress: Progress | None = None, callbacks: Sequence[Any] = ()
    ) -> RunResult: ...


#: the entry-point group a package declares its distiller under
ENTRY_POINT_GROUP = "greenladder.distillers"

#: criteria a smaller model can fix; failing only these makes a run a teacher for distillation
CEILINGS = frozenset({"max_latency_ms", "max_size_mb", "max_params"})


def only_ceilings_failed(verdict: Verdict) -> bool:
    """True when the run met the floor and failed nothing but ceilings."""
    return not verdict.passed and bool(verdict.failed) and set(verdict.failed) <= CEILINGS


def find_distiller(name: str = "default") -> Distiller:
    """The distiller declared as ``name`` under :data:`ENTRY_POINT_GROUP`, or :func:`unavailable`.

    A declared one that cannot be loaded (a broken install) also gives :func:`unavailable`, whose
    record says why, so the climb still finishes and reports it.
    """
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        return _unavailable(
            f"no distiller is installed (entry point {ENTRY_POINT_GROUP}:{name}); reinstall greenladder "
            "(pip install -e .) so its `distill` package is registered, or set ladder.distil_on_ceiling: false"
        )
    try:
        loaded = found[0].load()
    except (ImportError, AttributeError) as exc:
        return _unavailable(f"the distiller {found[0].value} could not be loaded ({type(exc).__name__}: {exc})")
    if not callable(loaded):
        return _unavailable(f"the distiller {found[0].value} is not callable")
    return loaded  # type: ignore[no-any-return]


def _unavailable(why: str) -> Distiller:
    def distil_unavailable(
        request: DistilRequest, progress: Progress | None = None, callbacks: Sequence[Any] = ()
    ) -> RunResult:
        if progress is not None:
            progress(f"{request.run_id}: distillation unavailable: {why}")
        # failed, not skipped: the ledger retries failed runs, so a rerun after installing the
        # distiller distils instead of reading this record back
        teacher = request.teacher_run
        message = f"distillation unavailable: {why}"
        return unjudged_student(teacher, request.run_id, str(teacher.artifact), "failed", message, Cost())

    return distil_unavailable


def unjudged_student(
    teacher_run: RunResult,
    run_id: str,
    source: str,
    status: str,
    message: str,
    cost: Cost,
    details: dict[str, Any] | None = None,
) -> RunResult:
    """The record of a student that was never trained to the end (no distiller, a refused pass): no metrics."""
    return RunResult(
        run_id=run_id,
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
