"""The pruner stops a trial only on evidence that separates it from the rung's best (hand-made predictions, no training)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from advisor.climb.pruning import LOOKS_ATTR, PairedPruner, PruningCallback, predictions_attr, prune_decision
from advisor.climb.tuning import RungTuner
from advisor.config.settings import build_config

#: 64 sampled rows, two balanced classes (the default train.eval_rows)
LABELS = [i % 2 for i in range(64)]


def right_on(rows: int, labels: list[int] = LABELS) -> list[int]:
    """Predictions right on the first ``rows`` rows and wrong on the others."""
    return [y if i < rows else 1 - y for i, y in enumerate(labels)]


def test_a_trial_a_few_rows_behind_is_not_pruned() -> None:
    """0.688 against 0.750 on 64 rows: a median rule stops it; 4 rows lost and none won is not evidence.

    The paired bootstrap alone would prune it (4 discordant rows make its interval too narrow); the
    exact test on those rows (p = 0.5^4 = 0.0625 one-sided) does not agree, so it trains on.
    """
    decision = prune_decision("accuracy", LABELS, right_on(44), right_on(48), 2, 0.95)
    assert decision.prune is False
    assert decision.gain is not None and decision.gain.high < 0, "the case where the bootstrap alone is too bold"
    assert "on the same 64 sampled rows (4 rows lost, 0 won; exact one-sided p 0.062)" in decision.reason


def test_a_trial_far_behind_on_the_same_rows_is_pruned() -> None:
    decision = prune_decision("accuracy", LABELS, right_on(32), right_on(60), 2, 0.95)
    assert decision.prune is True and decision.gain is not None and decision.gain.high < 0
    assert decision.reason.startswith("accuracy -43.8 [") and "at 95.0% confidence" in decision.reason


def test_the_comparison_is_paired_row_by_row() -> None:
    """The same gap (0.688 against 0.812) pruned or not depending on which rows differ.

    Losing 8 rows the best gets right and winning none separates the trials; losing 12 and winning
    4 back is the same net gap but could be noise. Two unpaired intervals would not tell them apart.
    """
    best = right_on(52)
    nested = right_on(44)  # loses rows 44-51, wins none
    mixed = [y if i < 40 or 52 <= i < 56 else 1 - y for i, y in enumerate(LABELS)]  # loses 40-51, wins 52-55
    assert sum(a == b for a, b in zip(mixed, LABELS, strict=True)) == sum(
        a == b for a, b in zip(nested, LABELS, strict=True)
    )
    assert prune_decision("accuracy", LABELS, nested, best, 2, 0.95).prune is True
    assert prune_decision("accuracy", LABELS, mixed, best, 2, 0.95).prune is False


def test_other_metrics_use_the_paired_bootstrap() -> None:
    labels = [i % 3 for i in range(64)]
    constant = [0] * 64  # one class for every row: macro-F1 far below a model right on every row
    decision = prune_decision("macro_f1", labels, constant, list(labels), 3, 0.95)
    assert decision.prune is True and decision.gain is not None and decision.gain.method == "paired bootstrap"


def test_no_reference_or_other_rows_never_prune() -> None:
    assert prune_decision("accuracy", LABELS, right_on(0), None, 2, 0.95).prune is False
    assert prune_decision("accuracy", LABELS, right_on(0), right_on(60)[:32], 2, 0.95).prune is False


# ----------------------------------------------------------------------------- wiring: RungTuner + callback


def _evaluate(tuner_trial, predictions: list[int], step: int, value: float, max_steps: int = 30) -> tuple:  # type: ignore[no-untyped-def]
    """One evaluation as ``train_run`` delivers it: the BestWeights' latest rows, then on_evaluate."""
    callback = PruningCallback(tuner_trial, "accuracy")
    callback.watch(SimpleNamespace(latest=(np.array(LABELS), np.array(predictions))), 2)
    control = SimpleNamespace(should_training_stop=False)
    args = SimpleNamespace(eval_steps=10)
    callback.on_evaluate(
        args, SimpleNamespace(global_step=step, max_steps=max_steps), control, {"eval_accuracy": value}
    )
    return control.should_training_stop, callback.stop_message


def _finished(tuner: RungTuner, rows_right: int) -> None:
    trial, _, _ = tuner.ask()
    for step in (10, 20, 30):
        _evaluate(trial, right_on(rows_right), step, rows_right / 64)
    tuner.tell(trial, rows_right / 64)


def test_the_callback_records_each_evaluation_and_prunes_against_the_best_finished_trial() -> None:
    tuner = RungTuner(build_config(), prune_after=10)
    _finished(tuner, 34)  # a poor finished trial: the reference must not be this one
    _finished(tuner, 62)  # the rung's best
    third, _, _ = tuner.ask()
    assert _evaluate(third, right_on(34), 5, 34 / 64) == (False, None)  # before the first epoch ended
    stopped, message = _evaluate(third, right_on(34), 10, 34 / 64)
    assert stopped is True and message is not None
    assert message.startswith("pruned at step 10: accuracy -43.8 [") and "best finished trial" in message
    attrs = tuner.study.trials[2].user_attrs
    assert attrs[predictions_attr(10)] == right_on(34) and attrs[LOOKS_ATTR] == 3


def test_a_trial_slightly_behind_the_best_trains_on() -> None:
    """The issue's case: behind the best at the step the median pruner stopped it, but not separably."""
    tuner = RungTuner(build_config(), prune_after=10)
    _finished(tuner, 48)
    second, _, _ = tuner.ask()
    assert _evaluate(second, right_on(44), 10, 44 / 64) == (False, None)
    assert _evaluate(second, right_on(46), 20, 46 / 64) == (False, None)


def test_the_last_evaluation_never_prunes() -> None:
    tuner = RungTuner(build_config(), prune_after=10)
    _finished(tuner, 62)
    second, _, _ = tuner.ask()
    assert _evaluate(second, right_on(20), 30, 20 / 64, max_steps=30) == (False, None)


def test_pruning_off_never_stops_a_trial() -> None:
    tuner = RungTuner(build_config(overrides=["tuning.pruning=false"]))
    _finished(tuner, 62)
    second, _, _ = tuner.ask()
    assert _evaluate(second, right_on(10), 10, 10 / 64) == (False, None)


def test_without_recorded_predictions_nothing_is_pruned() -> None:
    """A trial told from the ledger (a resumed climb) carries no predictions: no evidence, no pruning."""
    tuner = RungTuner(build_config(), previous=[({"learning_rate": 1e-4, "epochs": 3.0, "warmup_ratio": 0.1}, 0.95)])
    assert isinstance(tuner.study.pruner, PairedPruner)
    trial, _, _ = tuner.ask()
    assert _evaluate(trial, right_on(5), 10, 5 / 64) == (False, None)


def test_a_real_training_records_the_sampled_rows_at_every_evaluation(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """train_run hands the callback its BestWeights: each evaluation's 20 sampled rows land on the trial."""
    from advisor.data.task import column, load_task_data
    from advisor.runkey import RunKey
    from advisor.training.best import evaluation_rows
    from advisor.training.train import train_run
    from advisor.types import Candidate
    from tests.conftest import make_tiny_model, synthetic_rows, write_csv

    model = make_tiny_model(tmp_path / "tiny", layers=1)
    csv = write_csv(tmp_path / "data.csv", synthetic_rows(200))
    sets = ["train.epochs=2", "train.batch_size=16", "train.eval_rows=20", "metering.codecarbon=false"]
    config = build_config(overrides=[f"data.source={csv}", f"output.out={tmp_path / 'run'}", *sets])
    data = load_task_data(config.data)
    tuner = RungTuner(config, prune_after=1)
    trial, hp, _ = tuner.ask()
    callback = PruningCallback(trial, "accuracy")
    candidate = Candidate(name="tiny", kind="finetune", source=str(model))
    run = train_run(
        candidate,
        str(model),
        data,
        config,
        tmp_path / "run",
        RunKey("trial", "tiny", 1),
        hp,
        extra_callbacks=[callback],
    )
    attrs = trial.user_attrs
    labels = column(data.validation, "label")
    sample = evaluation_rows(labels, 20, config.train.seed)
    assert sample is not None and attrs["sample_labels"] == [labels[i] for i in sample]
    steps = [h.step for h in run.evaluations]
    assert len(steps) == 2 and all(len(attrs[predictions_attr(s)]) == 20 for s in steps)
    assert attrs[LOOKS_ATTR] == 2 and callback.stop_message is None  # the first trial has nobody to lose to
