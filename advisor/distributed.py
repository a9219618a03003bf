"""One job, several processes: which rank owns the results, and how ranks agree.

Under ``accelerate launch`` (torchrun underneath) every process runs ``advise`` from the top. The
Trainer trains in lockstep across them (DDP: gloo on CPUs, NCCL on GPUs), and its evaluation
gathers predictions from every rank, so each rank sees the same metrics. Everything else must be
made the same on purpose, or the ranks take different turns in the climb and wait on each other
for ever:

* rank 0 alone owns the run directory (lock, ledger, reports, saved models); the other ranks work
  in a private scratch folder holding a copy of rank 0's ledger, so a resumed climb reads the same
  runs back on every rank (:func:`advisor.store.ledger.rank_run_dir`);
* a run's record is rank 0's, its cost summed over ranks (:func:`agree`): every rank then sees the
  same record, and the job's FLOPs, tokens and energy are all ranks' work, not one rank's share;
* work that needs doing once (the final validation pass) runs on rank 0 and is sent to the others
  (:func:`from_main`).

Ranks are read from the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), so
they are known before any process group exists; the group itself is accelerate's ``PartialState``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from transformers import TrainerCallback

from advisor.errors import ConfigError
from advisor.types import MAXED, SUMMED, Cost, RunResult

T = TypeVar("T")

#: fields of a Cost that ranks running side by side spend each on its own, so the job's figure is their sum
_RANK_SUMMED = tuple(f for f in SUMMED if f != "wall_s") + MAXED  # wall time: the slowest rank's


def world_size() -> int:
    """Processes in this job (1 when not launched by torchrun / accelerate)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank (0 when not launched by torchrun / accelerate)."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True in the process that owns the run directory (the only one, outside a multi-process job)."""
    return rank() == 0


def _group() -> Any:
    """The default process group, started through accelerate (the Trainer reuses it)."""
    if not torch.distributed.is_initialized():
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true")
    return torch.distributed


def share(value: T) -> T:
    """Rank 0's ``value`` on every rank (other ranks' values are ignored); ``value`` as is alone.

    torch's object collectives pickle: only this job's own processes, joined by torchrun's
    rendezvous, exchange objects this way; nothing is unpickled from disk or from outside the job.
    """
    if world_size() == 1:
        return value
    box = [value if is_main() else None]
    _group().broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def barrier() -> None:
    if world_size() > 1:
        _group().barrier()


def from_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and give its result (or re-raise its exception) on every rank.

    For work that needs doing once per job, such as the final validation pass of a trained model:
    the other ranks hold the same weights and would only repeat it.
    """
    if world_size() == 1:
        return fn()
    outcome: tuple[bool, Any] = (False, None)
    if is_main():
        try:
            outcome = (True, fn())
        except Exception as exc:  # sent to the others so they stop too instead of waiting
            outcome = (False, exc)
    ok, value = share(outcome)
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def check_batch_split(batch_size: int) -> int:
    """The number of ranks, once sure each can take an equal share of a ``batch_size`` batch.

    Raises:
        ConfigError: the batch does not split evenly over the ranks.
    """
    ranks = world_size()
    if batch_size % ranks:
        raise ConfigError(
            f"The batch size {batch_size} does not split evenly over {ranks} processes. "
            f"Set train.batch_size to a multiple of {ranks}."
        )
    return ranks


def job_cost(costs: Sequence[Cost]) -> Cost:
    """The cost of one phase run by several ranks side by side: ``costs[0]`` (rank 0's) with the
    work each rank did on its own summed, and the wall time of the slowest rank.

    Memory peaks are summed too: the processes held their memory at the same time.
    """
    if not costs:
        raise ValueError("job_cost needs at least one rank's cost")
    first = costs[0]
    values: dict[str, Any] = {name: sum(getattr(c, name) for c in costs) for name in _RANK_SUMMED}
    values["wall_s"] = max(c.wall_s for c in costs)
    return dataclasses.replace(first, **values)


def agree(run: RunResult) -> RunResult:
    """Rank 0's record of a run on every rank, with the cost of the whole job (all ranks).

    Idempotent: a record already agreed (``details["ranks"]``) is returned unchanged, so it can be
    called both where a run is made and where it is recorded. Outside a multi-process job it
    returns ``run`` unchanged.
    """
    if world_size() == 1 or "ranks" in run.details:
        return run
    costs: list[Any] = [None] * world_size()
    _group().all_gather_object(costs, run.cost)
    agreed = share(run)
    return dataclasses.replace(agreed, cost=job_cost(costs), details={**agreed.details, "ranks": world_size()})


class StopTogether(TrainerCallback):
    """Stops every rank when one rank's callback asked to stop (add it after every other callback).

    Rules that read gathered figures (loss, validation metrics, clipped gradients) fire on every
    rank at once; a watchdog on the clock or on one GPU's utilisation fires on one rank only, which
    would leave the others waiting in the next collective for ever.
    """

    def _sync(self, control: Any) -> None:
        if world_size() == 1:
            return
        flag = torch.tensor([1.0 if control.should_training_stop else 0.0])
        if torch.distributed.get_backend() == "nccl":
            flag = flag.to(f"cuda:{torch.cuda.current_device()}")
        _group().all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        control.should_training_stop = bool(flag.item())

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._sync(control)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._sync(control)
