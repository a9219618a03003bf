"""Keep the best weights by the criterion metric, and stop once that metric stops improving.

The model a run returns is the one that scored best on the validation split at one of the
Trainer's evaluations, judged by ``criteria.metric`` (not the loss: validation loss often rises
while accuracy still improves). :class:`BestWeights` keeps that evaluation's weights in memory,
with the metrics and per-row predictions computed from them, so nothing has to be evaluated again
after training and the predictions a report compares are exactly those of the judged weights.
:class:`EarlyStopping` ends the run once no new best has come for a patience that scales with the
run's planned evaluations; it is a rule for plateaus and overfitting, so the run stays ``ok``.

A tie goes to the later weights: evaluations during training score a small sample of the
validation split (``train.eval_rows``), where ties are common, and the later weights have had more
training (keeping the earlier one on a tie cost MiniLM-L3 1.8 points on the demo's whole split).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from advisor.evaluations import Evaluation

MetricsFn = Callable[[np.ndarray, np.ndarray], dict[str, float]]


class BestWeights(TrainerCallback):
    """Keeps the weights, metrics and predictions of the best evaluation so far.

    Pass :meth:`compute_metrics` to the Trainer: it computes the metrics from the evaluation's
    predictions and holds both until :meth:`on_evaluate` learns whether they are a new best.

    Args:
        metric: the criterion metric, a key of ``metrics_fn``'s result.
        metrics_fn: ``(labels, predicted ids) -> metrics``, both 1-D arrays over the evaluated rows.
        order: when the evaluation set is the validation split reordered (sorted by length),
            ``order[i]`` is the split row of evaluation row ``i``; predictions are put back in the
            split's order with it.

    Attributes:
        step: training step of the best evaluation, or None before any evaluation.
        metrics: its metrics (unprefixed, e.g. ``{"accuracy": 0.76, ...}``).
        predictions: its predicted label id for every validation row, in the split's order.
        history: ``(step, metric)`` of every evaluation, in order.
        latest: ``(labels, predicted ids)`` of the latest evaluation, both in the evaluated rows'
            own order (the sample's, not the length-sorted one), or None before any evaluation:
            what a paired comparison between trials on the same rows reads (the pruner).
    """

    def __init__(self, metric: str, metrics_fn: MetricsFn, order: Sequence[int] | np.ndarray | None = None) -> None:
        self.metric = metric
        self.metrics_fn = metrics_fn
        self.order = np.asarray(order) if order is not None else None
        self.step: int | None = None
        self.metrics: dict[str, float] = {}
        self.predictions: np.ndarray = np.zeros(0, dtype=int)
        self.history: list[tuple[int, float]] = []
        self.latest: tuple[np.ndarray, np.ndarray] | None = None
        self._state: dict[str, torch.Tensor] | None = None
        self._pending: tuple[np.ndarray, dict[str, float]] | None = None

    def compute_metrics(self, pred: Any) -> dict[str, float]:
        """The Trainer's ``compute_metrics``: metrics of one evaluation, its predictions held back."""
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        ids = np.asarray(logits).argmax(axis=-1)
        labels = np.asarray(pred.label_ids)
        metrics = self.metrics_fn(labels, ids)
        if self.order is not None and len(self.order) == len(ids):
            ids, labels = _unsorted(ids, self.order), _unsorted(labels, self.order)
        self.latest = (labels, ids)
        self._pending = (ids, metrics)
        return metrics

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        pending, self._pending = self._pending, None
        value = (kwargs.get("metrics") or {}).get(f"eval_{self.metric}")
        model = kwargs.get("model")
        if pending is None or value is None or not math.isfinite(value) or model is None:
            return
        self.history.append((state.global_step, float(value)))
        if self.step is not None and value < self.metrics[self.metric]:
            return
        self.step = state.global_step
        self.predictions, self.metrics = pending
        # a copy on the host: the device keeps only the weights being trained
        self._state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def restore(self, model: torch.nn.Module) -> bool:
        """Load the best weights into ``model``; False (and ``model`` untouched) when there were none."""
        if self._state is None:
            return False
        model.load_state_dict(self._state)
        return True


def _unsorted(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``values`` of the length-sorted rows put back in the rows' own order (``order[i]``: row of sorted ``i``)."""
    out = np.empty_like(values)
    out[order] = values
    return out


def evaluation_rows(labels: Sequence[int], rows: int, seed: int) -> list[int] | None:
    """Indices of a fixed stratified sample of ``rows`` validation rows to score during training.

    None when ``rows`` is 0 or the split is no larger: then every evaluation scores the whole split
    and its best one is judged as it is. Sorted, so the sample keeps the split's order.
    """
    if rows <= 0 or len(labels) <= rows:
        return None
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    y = np.asarray(labels)
    try:
        picked, _ = train_test_split(index, train_size=rows, stratify=y, random_state=seed)
    except ValueError:  # a class too rare to stratify at this size
        picked, _ = train_test_split(index, train_size=rows, random_state=seed)
    return sorted(int(i) for i in picked)


def patience_for(planned_evals: int, share: float, min_patience: int) -> int:
    """Evaluations without a new best before early stopping: ``share`` of the planned ones, at least ``min_patience``.

    With the default 3 epochs at one evaluation each that is 2, so the rule can only act at the
    last evaluation, where it costs nothing: short runs are never cut. Longer runs (4-epoch trials,
    more evaluations per epoch) get a patience that grows with them rather than a fixed count
    that would stop a long run on a single noisy dip.
    """
    return max(min_patience, math.ceil(share * planned_evals))


class EarlyStopping(TrainerCallback):
    """Stop training when ``metric`` has not set a new best for ``patience`` evaluations.

    Attributes:
        stopped_step: the step at which it stopped the run, or None.
        best_step: the step of the best evaluation seen.
    """

    def __init__(self, metric: str, patience: int) -> None:
        if patience < 1:
            raise ValueError(f"EarlyStopping patience must be at least 1. Got {patience} instead.")
        self.key = f"eval_{metric}"
        self.patience = patience
        self.stopped_step: int | None = None
        self.best_step: int | None = None
        self._best = -math.inf
        self._since = 0

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self.stopped_step = self.best_step = None
        self._best, self._since = -math.inf, 0

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        value = (kwargs.get("metrics") or {}).get(self.key)
        if value is None or not math.isfinite(value):
            return
        if value > self._best:
            self._best, self._since, self.best_step = float(value), 0, state.global_step
            return
        self._since += 1
        if self._since >= self.patience and state.global_step < state.max_steps:
            self.stopped_step = state.global_step
            control.should_training_stop = True

    def describe(self, metric: str) -> str:
        """One line for the run's details, e.g. 'early-stopped at step 130: accuracy ... best at step 65'."""
        return (
            f"early-stopped at step {self.stopped_step}: no new best {metric} for {self.patience} evaluations "
            f"(best {self._best:.4g} at step {self.best_step})"
        )


def eval_history(log_history: Sequence[Mapping[str, Any]], metric: str) -> tuple[Evaluation, ...]:
    """Each evaluation's step, metric and validation loss, from the Trainer's log history."""
    return tuple(
        Evaluation(int(h["step"]), metric, h.get(f"eval_{metric}"), h.get("eval_loss"))
        for h in log_history
        if f"eval_{metric}" in h
    )
