"""Work a kill would lose: the running cost of a training phase, saved as it goes, counted on the next run.

While the teacher's fine-tune, a control or a distilled student trains, :class:`RunningCost` (a
Trainer callback) writes the phase's cost so far to ``<out>/inprogress/<phase>.json`` every
:data:`SNAPSHOT_EVERY_S` seconds; a phase that raises writes its whole metered cost there as it
ends. Once the phase's record is in the ledger the file is removed. A file still there when the
next run starts belongs to a phase that was killed or crashed: :func:`recover_lost` appends its cost
to the cost log as *lost to interruption*, with the step it reached, and removes the file. What is
not counted: at most the last :data:`SNAPSHOT_EVERY_S` seconds of a killed phase, and work outside
a training loop (the teacher's logits pass, evaluations), which has no step to snapshot at.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from advisor.atomic import write_text_atomic
from advisor.faults import fault_point
from advisor.metering.cost import Meter
from advisor.training.stopping import RunWatcher
from advisor.types import Cost
from advisor.verdicts.criteria import fmt_num
from distill.records import Runs

#: seconds between snapshots: each writes ~1 kB atomically and, with energy metering, takes one
#: codecarbon sample (~30 ms): 0.3% of the time, for at most 10 s of a killed phase left uncounted
SNAPSHOT_EVERY_S = 10.0
FOLDER = "inprogress"


class RunningCost(RunWatcher):
    """Saves one phase's running cost under ``<work_dir>/inprogress``; does nothing when ``work_dir`` is None.

    ``train_student`` binds it to the phase's meter and token counter (:meth:`bind`), as it does the
    budget watch.
    """

    def __init__(self, work_dir: Path | None, phase: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = work_dir / FOLDER / f"{phase}.json" if work_dir is not None else None
        self.phase = phase
        self.id = uuid.uuid4().hex
        self.clock = clock
        self.meter: Meter | None = None
        self.counter: Any = None
        self._last: float | None = None
        self._step, self._total = 0, 0

    def bind(self, meter: Meter, counter: Any) -> None:
        self.meter, self.counter = meter, counter

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._step, self._total = state.global_step, state.max_steps
        self._snapshot()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._step = state.global_step
        if self._last is None or self.clock() - self._last >= SNAPSHOT_EVERY_S:
            self._snapshot()
        fault_point(f"distill:{self.phase}:step{state.global_step}")  # test-only crash injection

    def _snapshot(self) -> None:
        if self.path is None or self.meter is None or not self.meter.active:
            return
        if self.counter is not None:
            self.counter.flush()  # the counts of the steps so far reach the meter
        self.save(self.meter.snapshot())

    def save(self, cost: Cost) -> None:
        """Write ``cost`` as the phase's latest running cost."""
        if self.path is None:
            return
        record = {
            "id": self.id,
            "phase": self.phase,
            "step": self._step,
            "total_steps": self._total,
            "cost": cost.to_dict(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, json.dumps(record))
        self._last = self.clock()

    def done(self) -> None:
        """The phase's record is in the ledger: nothing of it is lost."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    @contextmanager
    def metered(self, meter: Meter) -> Iterator[Meter]:
        """``with meter``; when the phase raises (a crash, Ctrl-C), its whole cost is saved as it ends."""
        try:
            with meter:
                yield meter
        except BaseException:
            with contextlib.suppress(RuntimeError):  # RuntimeError: the meter never opened, nothing was spent
                self.save(meter.cost)
            raise


def recover_lost(work_dir: Path, runs: Runs, say: Callable[[str], None]) -> None:
    """Count the phases an earlier run left unfinished as lost to interruption (once each)."""
    folder = work_dir / FOLDER
    if not folder.is_dir():
        return
    counted = {f.get("snapshot") for f in runs.costs("lost", "lost")}
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        phase = record["phase"]
        if not runs.has(phase) and record["id"] not in counted:
            cost = Cost.from_dict(record["cost"])
            where = f"step {record['step']} of {record['total_steps']}" if record["total_steps"] else "its start"
            runs.log_cost("lost", cost, "lost", snapshot=record["id"], run=phase, where=where)
            say(
                f"{phase}: an earlier run stopped at {where}; its {fmt_num(cost.wall_s)} s and "
                f"{fmt_num(cost.flops / 1e15)} PFLOPs are counted as lost to interruption, and it is trained again"
            )
        path.unlink()
