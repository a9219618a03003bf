"""Stop a trial only when the evidence separates it from the rung's best: a paired comparison on the same rows.

Evaluations during training score a small fixed sample of the validation split (``train.eval_rows``,
64 rows by default: about +-12 points at 95%). optuna's median pruner compared one trial's sampled
score with the median of earlier trials' scores at the same step, a difference of two noisy numbers
with no interval: on a 4,000-sentence task it stopped MiniLM-L6 at lr 3e-4 at step 13 of 39, and
that configuration, trained to the end, had the best validation score of any run.

Every trial of a rung scores the *same* sampled rows (the sample is drawn from the labels with
``train.seed``), so two trials at the same step can be compared row by row: the paired bootstrap of
:func:`advisor.verdicts.stats.paired_gain` (rows that are hard for both cancel out). A trial is pruned only
when that interval, and an exact McNemar test on the rows where the two differ, put it below the best
finished trial at the same step, at the configured confidence corrected (Bonferroni) for the
evaluations at which the trial may be pruned. A trial slightly behind, or behind on too few rows to
tell, trains on.

The decision is :func:`prune_decision`, a pure function of labels and predictions (tests build them
by hand); :class:`PairedPruner` is optuna's ``BasePruner`` around it, reading what
:class:`PruningCallback` recorded on each trial (its predictions at each step, as user attributes,
so workers sharing a study compare against each other's trials too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from scipy.stats import binomtest

from advisor.training.stopping import StopsRun
from advisor.verdicts.stats import PairedGain, bonferroni, paired_gain

#: user attributes a trial's evaluations are recorded in
LABELS_ATTR = "sample_labels"
CLASSES_ATTR = "num_labels"
LOOKS_ATTR = "planned_evaluations"
_PREDICTIONS = "sample_predictions@"


def predictions_attr(step: int) -> str:
    """The user attribute holding a trial's predictions on the sampled rows at ``step``."""
    return f"{_PREDICTIONS}{step}"


@dataclass(frozen=True)
class PruneDecision:
    """Whether to stop a trial, why, and the paired comparison it rests on (None when there was none)."""

    prune: bool
    reason: str
    gain: PairedGain | None = None


def prune_decision(
    metric: str,
    labels: Sequence[int],
    trial_predictions: Sequence[int],
    best_predictions: Sequence[int] | None,
    num_labels: int,
    level: float,
) -> PruneDecision:
    """Prune when the trial is worse than the best finished trial on the same rows, with confidence.

    Two tests must agree: the paired bootstrap interval of (trial - best) on ``metric`` lies below
    zero, and an exact McNemar test on the rows only one of them gets right says the trial loses
    more of them (one-sided, at the same level). The bootstrap alone is too bold when few rows
    differ: 4 rows lost and none won out of 64 gives it an interval below zero, where the exact
    test's p-value is 0.0625.

    Args:
        metric: the criterion metric (a key of :func:`advisor.verdicts.criteria.compute_metrics`).
        labels: gold label ids of the sampled rows, shape (n,).
        trial_predictions: this trial's predicted ids on those rows at this step, shape (n,).
        best_predictions: the best finished trial's predictions on the same rows at the same step,
            shape (n,); None when no finished trial evaluated at this step.
        num_labels: number of classes.
        level: two-sided confidence (already corrected for repeated looks); each one-sided test
            rejects at ``(1 - level) / 2``.

    Returns:
        ``prune`` is True only when both tests put the trial below the best.
    """
    if best_predictions is None:
        return PruneDecision(False, "no finished trial evaluated these rows at this step")
    if not labels or not (len(labels) == len(trial_predictions) == len(best_predictions)):
        return PruneDecision(False, "the trials did not score the same rows")
    gain = paired_gain(metric, labels, trial_predictions, best_predictions, num_labels, level)
    y, mine, best = (np.asarray(a) for a in (labels, trial_predictions, best_predictions))
    lost, won = int(np.sum((best == y) & (mine != y))), int(np.sum((mine == y) & (best != y)))
    p = float(binomtest(won, won + lost, 0.5, alternative="less").pvalue) if won + lost else 1.0
    shown = (
        f"{metric} {gain.text()} against the best finished trial on the same {gain.n} sampled rows "
        f"({lost} rows lost, {won} won; exact one-sided p {p:.2g})"
    )
    if gain.high < 0 and p < (1.0 - level) / 2:
        return PruneDecision(True, f"{shown}, at {level:.1%} confidence", gain)
    return PruneDecision(False, shown, gain)


def _reference(study: optuna.Study, step: int, labels: Any) -> Sequence[int] | None:
    """The predictions at ``step`` of the best finished trial that scored the same rows, or None."""
    key = predictions_attr(step)
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if t.value is not None and key in t.user_attrs and t.user_attrs.get(LABELS_ATTR) == labels
    ]
    if not done:
        return None
    return max(done, key=lambda t: float(t.value)).user_attrs[key]  # type: ignore[arg-type]


class PairedPruner(optuna.pruners.BasePruner):
    """optuna's pruner interface around :func:`prune_decision`.

    Args:
        metric: the criterion metric.
        level: confidence of every decision before the correction for repeated looks
            (``criteria.confidence``).
        warmup_steps: no pruning before this training step (one epoch, from the advisor: the first
            evaluations are noisy, and a lower learning rate starts slower).

    Attributes:
        reasons: trial number -> the reason of the latest decision about it.
    """

    def __init__(self, metric: str, level: float, warmup_steps: int = 0) -> None:
        self.metric, self.level, self.warmup_steps = metric, level, warmup_steps
        self.reasons: dict[int, str] = {}

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        decision = self.decide(study, trial)
        self.reasons[trial.number] = decision.reason
        return decision.prune

    def decide(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> PruneDecision:
        step = trial.last_step
        if step is None or step < self.warmup_steps:
            return PruneDecision(False, f"no pruning before step {self.warmup_steps}")
        attrs = trial.user_attrs
        mine, labels = attrs.get(predictions_attr(step)), attrs.get(LABELS_ATTR)
        if mine is None or labels is None:
            return PruneDecision(False, "this evaluation's predictions were not recorded")
        level = bonferroni(self.level, int(attrs.get(LOOKS_ATTR, 1)))
        reference = _reference(study, step, labels)
        return prune_decision(self.metric, labels, mine, reference, int(attrs.get(CLASSES_ATTR, 2)), level)


class PruningCallback(StopsRun):
    """Records each evaluation on the trial (its score and its predictions) and stops it when the pruner says so.

    ``train_run`` hands it the run's :class:`advisor.training.best.BestWeights` (``watch``), whose latest
    evaluation holds the sampled rows' labels and predictions.
    """

    def __init__(self, trial: optuna.trial.Trial, metric: str) -> None:
        super().__init__()
        self.trial = trial
        self.key = f"eval_{metric}"
        self._best: Any = None
        self._num_labels = 2

    def watch(self, best: Any, num_labels: int) -> None:
        """Read evaluations from ``best`` (an :class:`advisor.training.best.BestWeights`) of a ``num_labels``-class task."""
        self._best, self._num_labels = best, num_labels

    def _record(self, args: Any, state: Any) -> None:
        latest = getattr(self._best, "latest", None)
        if latest is None:
            return
        labels, predictions = ([int(x) for x in a] for a in latest)
        trial = self.trial
        if LABELS_ATTR not in trial.user_attrs:  # written once: the sample is the same at every evaluation
            eval_steps = getattr(args, "eval_steps", None) or 0
            looks = max(1, int(state.max_steps // eval_steps)) if eval_steps and getattr(state, "max_steps", 0) else 1
            trial.set_user_attr(LABELS_ATTR, labels)
            trial.set_user_attr(CLASSES_ATTR, self._num_labels)
            trial.set_user_attr(LOOKS_ATTR, looks)
        trial.set_user_attr(predictions_attr(state.global_step), predictions)

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Mapping[str, float] | None = None, **kw: Any
    ) -> None:
        if not metrics or self.key not in metrics:
            return
        self._record(args, state)
        self.trial.report(float(metrics[self.key]), step=state.global_step)
        last = getattr(state, "max_steps", 0) and state.global_step >= state.max_steps
        if not last and self.trial.should_prune():  # stopping at the last evaluation saves nothing
            why = getattr(self.trial.study.pruner, "reasons", {}).get(self.trial.number, "the pruner said so")
            self.stop_message = f"pruned at step {state.global_step}: {why}"
            control.should_training_stop = True
