"""What a run's evaluations leave behind for its verdict and its tuner: the baseline's and a probe's
out-of-fold predictions (:class:`CrossValidation`), and each evaluation while a run trained
(:class:`Evaluation`). Frozen records that :class:`advisor.types.RunResult` carries as fields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CrossValidation:
    """Out-of-fold predictions over train + validation, in folds the size of the training split: the
    evidence the baseline's and a probe's verdicts rest on (many more rows than the validation split,
    so a tighter interval; :func:`advisor.verdicts.criteria.run_interval`).

    Attributes:
        folds: how many folds.
        train_size: rows each fold's model was fitted on.
        labels: the true label of every row predicted, in the order predicted.
        predictions: each row's out-of-fold prediction, in the same order.
    """

    folds: int
    train_size: int
    labels: tuple[int, ...]
    predictions: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(int(v) for v in self.labels))
        object.__setattr__(self, "predictions", tuple(int(v) for v in self.predictions))
        if len(self.labels) != len(self.predictions):
            raise ValueError(
                f"CrossValidation: {len(self.labels)} labels but {len(self.predictions)} predictions; "
                "every row predicted needs its label."
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "folds": self.folds,
            "train_size": self.train_size,
            "labels": list(self.labels),
            "predictions": list(self.predictions),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CrossValidation:
        return cls(int(d.get("folds", 0)), int(d.get("train_size", 0)), d.get("labels", ()), d.get("predictions", ()))


@dataclass(frozen=True)
class Evaluation:
    """One evaluation while a run trained: its step, the criterion metric on the rows it scored (the
    sampled ones, ``train.eval_rows``) and the validation loss. The learning-rate probe reads the
    losses of a rung's first trial (:meth:`advisor.climb.tuning.RungTuner.queue_probe`).
    """

    step: int
    metric: str
    value: float | None
    loss: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, self.metric: self.value, "eval_loss": self.loss}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Evaluation:
        metric = next((k for k in d if k not in ("step", "eval_loss")), "")
        return cls(int(d["step"]), metric, d.get(metric), d.get("eval_loss"))
