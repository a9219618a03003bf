"""Decide before paying: the teacher against the no-teacher control, paired, on the same rows."""

from __future__ import annotations

import pytest

from advisor.climb.compaction import worth_distilling
from distill.decide import describe, teacher_vs_control


def test_a_teacher_clearly_ahead_is_worth_distilling():
    labels = [i % 2 for i in range(200)]
    teacher = list(labels)  # always right
    control = [y if i % 4 else 1 - y for i, y in enumerate(labels)]  # wrong on a quarter of the rows
    check = teacher_vs_control(teacher, control, labels)
    assert check.verdict == "teacher_better" and check.n == 200
    assert check.teacher_only == 50 and check.control_only == 0 and check.p_value < 1e-10
    assert check.difference == pytest.approx(0.25) and 0 < check.low <= check.difference <= check.high
    assert "can pay" in describe(check)


def test_a_teacher_no_better_than_the_control_recommends_the_cheaper_path():
    labels = [i % 2 for i in range(60)]
    # each is wrong on its own 6 rows: same accuracy, disagreeing rows split evenly
    teacher = [1 - y if i < 6 else y for i, y in enumerate(labels)]
    control = [1 - y if 6 <= i < 12 else y for i, y in enumerate(labels)]
    check = teacher_vs_control(teacher, control, labels)
    assert check.verdict == "no_evidence" and check.difference == 0 and check.p_value == 1.0
    assert check.low < 0 < check.high
    text = describe(check)
    assert "train the small student directly" in text and "n=" not in text and "60 validation rows" in text


def test_with_a_transfer_set_only_a_teacher_shown_behind_takes_the_cheaper_path():
    labels = [i % 2 for i in range(60)]
    level_t = [1 - y if i < 6 else y for i, y in enumerate(labels)]  # level with the control (as above)
    level_c = [1 - y if 6 <= i < 12 else y for i, y in enumerate(labels)]
    behind_t = [1 - y if i < 24 else y for i, y in enumerate(labels)]  # wrong on 24 rows the control gets right
    level, behind = teacher_vs_control(level_t, level_c, labels), teacher_vs_control(behind_t, level_c, labels)
    assert level.verdict == "no_evidence" and behind.verdict == "control_better"
    # without a transfer set the teacher must be shown ahead; with one, only shown behind stops it
    assert not worth_distilling(level.verdict, 0) and worth_distilling(level.verdict, 2000)
    assert not worth_distilling(behind.verdict, 0) and not worth_distilling(behind.verdict, 2000)
    assert "labels 2,000 texts the control cannot use" in describe(level, 2000)
    assert "train the small student directly" in describe(behind, 2000)


def test_a_small_lead_inside_the_noise_is_not_called_a_win():
    labels = [i % 2 for i in range(40)]
    teacher = [1 - y if i < 3 else y for i, y in enumerate(labels)]  # 37/40
    control = [1 - y if i < 5 else y for i, y in enumerate(labels)]  # 35/40, same rows wrong plus two
    check = teacher_vs_control(teacher, control, labels)
    assert check.difference == pytest.approx(0.05) and check.verdict == "no_evidence"
    assert teacher_vs_control(teacher, control, labels).low == check.low  # seeded: the same interval again


def test_mismatched_rows_are_refused():
    with pytest.raises(ValueError, match="same non-empty rows"):
        teacher_vs_control([0, 1], [0], [0, 1])


def test_decide_first_without_the_control_it_compares_with_is_refused():
    from advisor.errors import ConfigError
    from distill.config import build_distill_config

    with pytest.raises(ConfigError, match="distill.decide_first needs distill.control"):
        build_distill_config(extra={"teacher": "t", "distill": {"decide_first": True, "control": False}})


def test_the_check_compares_in_the_metric_the_student_is_judged_by() -> None:
    # 200 rows, 180 of class 0: the teacher finds half the rare class and misses 5 common rows, the
    # control predicts the common class only. Accuracy calls them level; macro-F1 shows the teacher ahead.
    labels = [0] * 180 + [1] * 20
    teacher = [0] * 175 + [1] * 5 + [1] * 10 + [0] * 10
    control = [0] * 200
    by_accuracy = teacher_vs_control(teacher, control, labels)
    by_f1 = teacher_vs_control(teacher, control, labels, metric="macro_f1")
    assert by_accuracy.metric == "accuracy" and by_accuracy.verdict == "no_evidence"
    assert by_accuracy.teacher_score == 0.925 and by_accuracy.control_score == 0.9
    assert by_f1.metric == "macro_f1" and by_f1.verdict == "teacher_better", by_f1
    assert by_f1.p_value is None and "McNemar" not in describe(by_f1)  # McNemar is for proportions
    assert describe(by_f1).startswith("macro_f1: teacher")
