"""Best weights by the criterion metric, and early stopping once it stops improving."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments

from advisor.training.best import BestWeights, EarlyStopping, patience_for
from tests.conftest import tiny_classifier


def _accuracy(labels: np.ndarray, ids: np.ndarray) -> dict[str, float]:
    return {"accuracy": float((labels == ids).mean())}


def _examples(n: int, flip: bool = False) -> Dataset:
    ids = torch.randint(5, 99, (n, 8), generator=torch.Generator().manual_seed(0))
    labels = (ids[:, 0] > 50).long()
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": (1 - labels if flip else labels).tolist()})


class Snapshots(TrainerCallback):
    """The weights at every evaluation, to compare with what BestWeights hands back."""

    def __init__(self) -> None:
        self.at: dict[int, dict[str, torch.Tensor]] = {}

    def on_evaluate(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        self.at[state.global_step] = {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_run_that_gets_worse_is_stopped_and_the_best_evaluations_weights_come_back(tmp_path) -> None:
    # learn 8 examples by heart; validate on the same texts with flipped labels: accuracy falls as it learns
    model = tiny_classifier(dropout=0.0)
    best, stop, snaps = BestWeights("accuracy", _accuracy), EarlyStopping("accuracy", patience=2), Snapshots()
    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(tmp_path),
            max_steps=300,
            learning_rate=1e-3,
            per_device_train_batch_size=8,
            eval_strategy="steps",
            eval_steps=2,
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
        ),
        train_dataset=_examples(8),
        eval_dataset=_examples(8, flip=True),
        compute_metrics=best.compute_metrics,
        callbacks=[best, stop, snaps],
    )
    trainer.train()
    scores = [s for _, s in best.history]
    assert stop.stopped_step is not None and trainer.state.global_step == stop.stopped_step < 300
    assert stop.stopped_step == best.history[-1][0] and len(best.history) >= 3
    assert best.metrics["accuracy"] == max(scores) and scores[-1] < max(scores)
    assert best.step == max(step for step, s in best.history if s == max(scores))  # the last of equals
    assert "no new best accuracy for 2 evaluations" in stop.describe("accuracy")
    assert best.restore(trainer.model)
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(tensor, snaps.at[best.step][name]), name


def test_predictions_of_a_length_sorted_evaluation_come_back_in_the_splits_order() -> None:
    # split rows 0..3 were evaluated in the order 2, 0, 3, 1
    best = BestWeights("accuracy", _accuracy, order=[2, 0, 3, 1])
    logits = np.array([[0, 1], [1, 0], [0, 1], [1, 0]])  # evaluated rows predict 1, 0, 1, 0
    metrics = best.compute_metrics(SimpleNamespace(predictions=logits, label_ids=np.array([1, 0, 1, 1])))
    assert metrics == {"accuracy": 0.75}
    model = torch.nn.Linear(2, 2)
    best.on_evaluate(None, SimpleNamespace(global_step=5), None, metrics={"eval_accuracy": 0.75}, model=model)
    assert list(best.predictions) == [0, 0, 1, 1]  # split row 2 -> 1, row 0 -> 0, row 3 -> 1, row 1 -> 0
    assert best.step == 5 and best.metrics == {"accuracy": 0.75}
    labels, latest = best.latest  # what the pruner compares: labels and predictions in the same row order
    assert list(latest) == [0, 0, 1, 1] and list(labels) == [0, 1, 1, 1]


def test_a_tie_is_not_a_new_best_and_early_stopping_counts_it_as_no_progress() -> None:
    stop = EarlyStopping("accuracy", patience=2)
    control = SimpleNamespace(should_training_stop=False)
    stop.on_train_begin(None, None, control)
    for step, value in [(10, 0.70), (20, 0.70), (30, 0.69)]:
        stop.on_evaluate(
            None, SimpleNamespace(global_step=step, max_steps=100), control, metrics={"eval_accuracy": value}
        )
    assert control.should_training_stop and stop.stopped_step == 30 and stop.best_step == 10


def test_patience_grows_with_the_planned_evaluations_and_never_stops_a_three_evaluation_run_early() -> None:
    assert patience_for(3, 0.34, 2) == 2  # can act only at the 3rd, the last: never cuts the run
    assert patience_for(6, 0.34, 2) == 3
    assert patience_for(12, 0.34, 2) == 5
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping("accuracy", patience=0)
