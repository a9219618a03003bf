"""What every training-health rule builds on: the record of a firing and the callback base.

The rules that read the loss and the gradients (:mod:`advisor.health.rules`) and those that watch the
machine (:mod:`advisor.health.watchdog`) both derive from :class:`HealthRule`; :mod:`advisor.health.rules`
assembles them all (``health_callbacks``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments


@dataclass(frozen=True)
class RuleFiring:
    """One rule stopping one run.

    Attributes:
        rule: the rule's name, e.g. "loss_not_decreasing".
        step: the optimizer step at which the rule fired (the last completed step for a stall).
        message: one line with the numbers, e.g. "loss not decreasing: mean loss 0.693 vs 0.694 ...".
        numbers: the figures behind the message, for the ledger and the report.
    """

    rule: str
    step: int
    message: str
    numbers: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "numbers", {k: float(v) for k, v in self.numbers.items()})


class HealthRule(TrainerCallback):
    """Base of the rules: records the first firing and keeps the Trainer stopping.

    Subclasses call :meth:`_fire`. After a firing, the step's pending evaluation and checkpoint are
    cancelled on every later event, because the Trainer's default flow sets them in ``on_step_end``
    and ``on_epoch_end`` after a rule that fired earlier in the step already asked to stop.
    """

    name: ClassVar[str] = "rule"

    def __init__(self) -> None:
        self.firing: RuleFiring | None = None
        #: why the rule watches nothing in this run (e.g. no GPU), or None when it is active
        self.inactive_reason: str | None = None

    def _fire(self, control: TrainerControl, step: int, message: str, **numbers: float) -> None:
        if self.firing is None:
            self.firing = RuleFiring(self.name, step, message, numbers)
        self._halt(control)

    def _halt(self, control: TrainerControl) -> None:
        if self.firing is not None:
            control.should_training_stop = True
            control.should_evaluate = False
            control.should_save = False

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self.firing = None

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self._halt(control)

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self._halt(control)
