"""Decide before paying: does the teacher beat what the student can learn on its own?

Distillation only pays when the teacher knows more than the student learns from the labels alone.
Before the distilled students are trained, the teacher and the first no-teacher control (the
cheap path: the same student trained on the labels) are compared on the same validation rows:
a paired bootstrap interval of the difference in the metric the student is judged by
(:func:`advisor.verdicts.stats.paired_gain`, resampling rows) and, for accuracy, McNemar's exact test on the
rows where they disagree (McNemar 1947). When the interval does not
lie above ``margin``, the report says so and recommends the cheaper path.

With a transfer set (unlabelled texts, augmented copies) the bar is lower: the teacher labels
texts the control never sees, so a teacher level with the control still adds signal, and only a
teacher shown *behind* it sends the run down the cheaper path (the policy's
:func:`advisor.climb.compaction.worth_distilling`). In
``benchmarks/distill_transfer.py`` (500 labels, 2,000 withheld texts, 3 seeds) the check found no
evidence either way on every SpamAssassin seed, and the distilled students beat their control by
+2.1 [+1.1, +3.2] points (same-family teacher) and +2.6 [+1.2, +3.9] (cross-family), pooled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from advisor.climb.compaction import worth_distilling
from advisor.verdicts.stats import metric_value, paired_gain

Verdict = Literal["teacher_better", "no_evidence", "control_better"]


@dataclass(frozen=True)
class TeacherCheck:
    """Teacher against the no-teacher control on the same rows, in ``metric``."""

    metric: str
    teacher_score: float
    control_score: float
    #: teacher minus control, with its paired bootstrap interval
    difference: float
    low: float
    high: float
    confidence: float
    #: rows compared, and rows where exactly one of the two was right (teacher right, control right)
    n: int
    teacher_only: int
    control_only: int
    #: McNemar's exact two-sided p-value on the discordant rows (accuracy); None for other metrics
    p_value: float | None
    margin: float
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def teacher_vs_control(
    teacher_predictions: Sequence[int],
    control_predictions: Sequence[int],
    labels: Sequence[int],
    *,
    metric: str = "accuracy",
    margin: float = 0.0,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> TeacherCheck:
    """Compare two models' predictions on the same labelled rows.

    Args:
        teacher_predictions: ``[N]`` the teacher's predicted label per row.
        control_predictions: ``[N]`` the control's, same rows in the same order.
        labels: ``[N]`` the true labels.
        metric: what they are compared in: the metric the student is chosen and judged by.
        margin: the teacher must beat the control by more than this (in ``metric``, 0-1) for the
            verdict ``teacher_better``: the lower end of the interval must exceed it.
        confidence: of the two-sided bootstrap interval.
        resamples: bootstrap resamples of the rows.
        seed: seeds the resampling, so the same predictions give the same interval.
    """
    if not len(teacher_predictions) == len(control_predictions) == len(labels) or len(labels) == 0:
        raise ValueError(
            "teacher_vs_control needs the same non-empty rows for both models. "
            f"Got {len(teacher_predictions)}, {len(control_predictions)}, {len(labels)}."
        )
    num_labels = 1 + int(max(max(labels), max(teacher_predictions), max(control_predictions)))
    gain = paired_gain(
        metric,
        labels,
        teacher_predictions,
        control_predictions,
        num_labels,
        confidence,
        replicates=resamples,
        seed=seed,
    )
    low, high = gain.low / 100, gain.high / 100
    t = np.asarray(teacher_predictions) == np.asarray(labels)
    c = np.asarray(control_predictions) == np.asarray(labels)
    teacher_only, control_only = int((t & ~c).sum()), int((c & ~t).sum())
    verdict: Verdict = "teacher_better" if low > margin else "control_better" if high < 0 else "no_evidence"
    return TeacherCheck(
        metric=metric,
        teacher_score=metric_value(metric, labels, teacher_predictions, num_labels),
        control_score=metric_value(metric, labels, control_predictions, num_labels),
        difference=gain.points / 100,
        low=low,
        high=high,
        confidence=confidence,
        n=gain.n,
        teacher_only=teacher_only,
        control_only=control_only,
        p_value=gain.p_value,
        margin=margin,
        verdict=verdict,
    )


def describe(check: TeacherCheck, transfer_rows: int = 0) -> str:
    """One line for the report: the comparison with its interval and n, and what to do."""
    mcnemar = f", McNemar p={check.p_value:.3g}" if check.p_value is not None else ""
    figures = (
        f"{check.metric}: teacher {check.teacher_score:.3f} vs no-teacher control {check.control_score:.3f} on the "
        f"same {check.n} validation rows: difference {100 * check.difference:+.1f} points "
        f"[{100 * check.low:+.1f}, {100 * check.high:+.1f}] ({100 * check.confidence:.0f}% paired bootstrap){mcnemar}"
    )
    if check.verdict == "teacher_better":
        return f"{figures}. The teacher knows more than the student learns alone: distillation can pay."
    if transfer_rows > 0 and worth_distilling(check.verdict, transfer_rows):
        return (
            f"{figures}. The teacher is not shown behind the control and labels {transfer_rows:,} texts the control "
            "cannot use: distillation can pay (a teacher level with its control gained about 2 points with a "
            "transfer set in benchmarks/distill_transfer.py)."
        )
    if transfer_rows > 0:
        return (
            f"{figures}. The teacher is behind the control: its labels on the transfer set are unlikely to help, "
            "so the cheaper path is to train the small student directly (the control)."
        )
    return (
        f"{figures}. The interval does not show the teacher ahead by more than {100 * check.margin:.1f} points, so "
        "its soft targets are unlikely to add anything: the cheaper path is to train the small student directly "
        "(the control). A stronger teacher, or unlabelled texts from the domain (--unlabeled; ladder.distil_unlabeled in advise), may change that."
    )
