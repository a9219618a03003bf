"""Count the tokens a model actually processes, and their analytic FLOPs, into a :class:`~advisor.metering.cost.Meter`.

Counting happens at the model (a forward pre-hook reads each batch's attention mask), not in the
data collator; see :class:`MeteringCallback` for why. FLOPs use :func:`advisor.metering.flops.forward_coefficients`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import TrainerCallback

from advisor.metering.cost import Meter
from advisor.metering.flops import PASSES, forward_coefficients
from advisor.training.stopping import RunWatcher
from advisor.types import Cost


class _Tally:
    """Counts of one kind of forward pass (train or eval), kept cheap to update.

    Real lengths are summed on the device the mask lives on (sum of s and of s^2, enough for the
    FLOPs polynomial of :func:`advisor.metering.flops.forward_coefficients`), so counting needs no host sync
    per step; the sums are read once, when flushed. One running sum per device: under DataParallel
    the replicas on each GPU call the hook from their own threads, each with its slice of the batch.
    """

    def __init__(self) -> None:
        self.rows = 0
        self.positions = 0
        self.padded_forward_flops = 0.0
        self.sums: dict[torch.device, torch.Tensor] = {}

    def clear(self) -> None:
        self.rows = self.positions = 0
        self.padded_forward_flops = 0.0
        self.sums = {}

    def totals(self) -> tuple[int, int]:
        """(sum of real lengths, sum of their squares) over every device; one host sync per device."""
        s1 = s2 = 0
        for sums in self.sums.values():
            a, b = (int(v) for v in sums.tolist())
            s1, s2 = s1 + a, s2 + b
        return s1, s2


class MeteringCallback(TrainerCallback):
    """Counts real and padded tokens and analytic FLOPs of every forward pass into a :class:`Meter`.

    It counts at the model, not in the data collator: a forward pre-hook reads each batch's
    ``attention_mask`` (rows x padded length from its shape, real tokens from its row sums). The
    collator is the wrong place because the data loader fetches one batch ahead of the model
    (accelerate's end-of-data lookahead) and may run in worker processes, so the collator sees
    batches the model never processes. A forward in ``model.training`` mode counts as training
    (3x forward FLOPs), otherwise as evaluation.

    The hook is attached when the Trainer is built or training begins (or by :meth:`attach` for a
    loop of one's own); counts go to the meter at each evaluation, at the end of training and when
    the meter closes.

    Args:
        meter: where counts go; may be replaced (``callback.meter = other``) between phases.
        config: the model config for the FLOPs formula; the attached model's when None.
        num_labels: classifier outputs; read from the config when None.
    """

    def __init__(self, meter: Meter, config: Any = None, num_labels: int | None = None) -> None:
        self.meter = meter
        self.config = config
        self.num_labels = num_labels
        self._tallies = {"train": _Tally(), "eval": _Tally()}
        self._handle: Any = None
        self._model: Any = None
        self._coefficients: tuple[float, float, float] | None = None
        self._lock = threading.Lock()  # DataParallel replicas run the hook from several threads
        meter.before_close(self.flush)

    def attach(self, model: torch.nn.Module) -> None:
        """Start counting the forward passes of ``model`` (idempotent)."""
        if self._model is model:
            return
        self.close()
        config = self.config if self.config is not None else getattr(model, "config", None)
        self._coefficients = forward_coefficients(config, self.num_labels)
        self._model = model
        self._handle = model.register_forward_pre_hook(self._on_forward, with_kwargs=True)

    def close(self) -> None:
        """Stop counting (remove the hook); counts not yet flushed are kept."""
        if self._handle is not None:
            self._handle.remove()
        self._handle = self._model = None

    @torch.compiler.disable
    def _on_forward(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs.get("inputs_embeds")
        ref = mask if mask is not None else ids
        if ref is None:
            return
        rows, length = ref.shape[:2]
        tally = self._tallies["train" if module.training else "eval"]
        with torch.no_grad():
            if mask is not None:
                lengths = mask.sum(dim=1, dtype=torch.int64)
            else:
                lengths = torch.full((rows,), length, dtype=torch.int64, device=ref.device)
            sums = torch.stack([lengths.sum(), (lengths * lengths).sum()])
        a, b, c = self._coefficients or (0.0, 0.0, 0.0)
        with self._lock:
            before = tally.sums.get(ref.device)
            tally.sums[ref.device] = sums if before is None else before + sums
            tally.rows += int(rows)
            tally.positions += int(rows) * int(length)
            tally.padded_forward_flops += int(rows) * (a * length + b * length * length + c)

    def pending_flops(self) -> float:
        """FLOPs counted but not yet handed to the meter (padding included; no device sync)."""
        return sum(PASSES[kind] * tally.padded_forward_flops for kind, tally in self._tallies.items())

    def _figures(self, kind: str, tally: _Tally) -> tuple[int, int, float, float]:
        """(real tokens, padding tokens, FLOPs, padding FLOPs) of one tally; reads the device sums once."""
        a, b, c = self._coefficients or (0.0, 0.0, 0.0)
        s1, s2 = tally.totals()
        real_forward = a * s1 + b * s2 + c * tally.rows
        passes = PASSES[kind]
        total = passes * tally.padded_forward_flops
        return s1, tally.positions - s1, total, max(total - passes * real_forward, 0.0)

    def flush(self) -> None:
        """Hand the counts so far to the meter (if it is open); reads the device sums once."""
        if not self.meter.active or self._coefficients is None:
            return
        for kind, tally in self._tallies.items():
            with self._lock:
                if not tally.sums:
                    continue
                real, padded, flops, padding = self._figures(kind, tally)
                tally.clear()
            self.meter.add_tokens(real=real, padded=padded)
            self.meter.add_flops(kind, flops, padding)  # type: ignore[arg-type]

    def pending_cost(self) -> Cost:
        """The counts not yet handed to the meter, as FLOPs and tokens, left where they are.

        A checkpoint adds them to :meth:`advisor.metering.cost.Meter.snapshot`; since nothing is flushed, the
        run's own totals are summed exactly as they would have been without the checkpoint.
        """
        flops = {"train": 0.0, "eval": 0.0}
        padding = 0.0
        tokens = padded_tokens = 0
        for kind, tally in self._tallies.items():
            with self._lock:
                if not tally.sums or self._coefficients is None:
                    continue
                real, padded, total, wasted = self._figures(kind, tally)
            flops[kind] += total
            padding += wasted
            tokens, padded_tokens = tokens + real, padded_tokens + padded
        return Cost(
            train_flops=flops["train"],
            eval_flops=flops["eval"],
            padding_flops=padding,
            tokens=tokens,
            padded_tokens=padded_tokens,
            provenance={"flops": "analytic"} if tokens + padded_tokens > 0 else {},
        )

    # -- Trainer events ---------------------------------------------------------------------------

    def on_init_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is not None:
            self.attach(model)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is not None:
            self.attach(model)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.flush()

    def on_predict(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
        self.flush()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.flush()


class CostCheckpoint(RunWatcher):
    """Records a training run's cost so far, so that work a kill interrupts is still counted.

    ``write(cost, step)`` gets the run's cost up to now (:meth:`advisor.metering.cost.Meter.snapshot` plus the
    counter's :meth:`MeteringCallback.pending_cost`) when training begins, at the end of the step
    before each evaluation, after each evaluation, and otherwise at most every ``every_s`` seconds of
    ``clock``. The writer keeps the latest only (:meth:`advisor.store.ledger.Ledger.checkpoint`); a rerun
    after a kill books it as lost to interruption. What a kill can lose uncounted is the work since
    the last write: under ``every_s`` seconds, or one evaluation pass.

    :func:`advisor.training.train.train_run` binds it to the run's meter and counter (``bind``), as it does the
    budget watch.
    """

    def __init__(
        self, write: Callable[[Cost, int], None], every_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.write, self.every_s, self.clock = write, every_s, clock
        self.meter: Meter | None = None
        self.counter: MeteringCallback | None = None
        self._last: float | None = None

    def bind(self, meter: Meter, counter: MeteringCallback | None) -> None:
        self.meter, self.counter, self._last = meter, counter, None

    def _checkpoint(self, state: Any) -> None:
        if self.meter is None or not self.meter.active:
            return
        cost = self.meter.snapshot(self.counter.pending_cost() if self.counter is not None else None)
        self.write(cost, int(state.global_step))
        self._last = self.clock()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._checkpoint(state)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # the Trainer's flow callback runs first and has set should_evaluate for this step
        due = self._last is None or self.clock() - self._last >= self.every_s
        if control.should_evaluate or due:
            self._checkpoint(state)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if control.should_evaluate:  # evaluating once an epoch, the flow callback decides here
            self._checkpoint(state)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._checkpoint(state)


def checkpoint_to(ledger: Any, run_id: str) -> CostCheckpoint:
    """A :class:`CostCheckpoint` that keeps run ``run_id``'s cost so far in ``ledger`` (an
    :class:`advisor.store.ledger.Ledger`: :meth:`~advisor.store.ledger.Ledger.checkpoint`)."""
    return CostCheckpoint(lambda cost, step: ledger.checkpoint(run_id, cost, step))
