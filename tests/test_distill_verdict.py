"""The delivered student is judged as `advise` judges a rung, and its gain over the control has a paired interval.

Pure functions on hand-made records: nothing trains here.
"""

from __future__ import annotations

import pytest

from advisor.types import Candidate, Cost, Footprint, RunResult
from distill.config import DistillCriteria, build_distill_config
from distill.verdict import acceptance, gain_over, has_criteria, judge_form, per_unit
from tests.conftest import key_for

LABELS = [i % 2 for i in range(200)]


def _run(run_id: str, right: int, *, kind: str = "distilled") -> RunResult:
    """A run right on the first ``right`` of the 200 validation rows, wrong on the rest."""
    preds = [y if i < right else 1 - y for i, y in enumerate(LABELS)]
    return RunResult(
        key=key_for(run_id),
        candidate=Candidate(name=run_id, kind=kind, source="x", params_total=1000),  # type: ignore[arg-type]
        hyperparameters={"seed": 0},
        status="ok",
        metrics={"accuracy": right / 200, "macro_f1": right / 200},
        cost=Cost(),
        val_predictions=tuple(preds),
    )


def _judge(run: RunResult, criteria: DistillCriteria, teacher: float = 0.9, size: float = 10.0) -> dict:
    return judge_form(run, criteria, teacher, Footprint(size, 1.0, 2.0, 1000, "cpu"), LABELS, 2)


def test_a_retention_floor_is_the_share_of_the_teachers_score_and_the_higher_floor_binds():
    criteria, source = acceptance(DistillCriteria(min_retention=0.9), 0.8)
    assert criteria.floor == pytest.approx(0.72) and "retention 0.9" in source
    criteria, source = acceptance(DistillCriteria(min_retention=0.9, floor=0.75), 0.8)
    assert criteria.floor == pytest.approx(0.75) and "--target accuracy=0.75" in source
    assert not has_criteria(DistillCriteria()) and has_criteria(DistillCriteria(max_size_mb=5))


@pytest.mark.parametrize(
    ("right", "state"),
    [(196, "pass"), (150, "fail"), (180, "undecided")],  # floor 0.9 x 1.0 = 0.9: 0.98, 0.75, 0.90
)
def test_the_floor_is_decided_by_the_students_interval_pass_fail_or_undecided(right, state):
    verdict = _judge(_run("distilled-seed0", right), DistillCriteria(min_retention=0.9), teacher=1.0)
    assert verdict["state"] == state, verdict["reasons"]
    assert verdict["interval"]["n"] == 200 and verdict["interval"]["low"] <= right / 200 <= verdict["interval"]["high"]


def test_a_ceiling_fails_outright_and_says_which():
    verdict = _judge(_run("s", 200), DistillCriteria(max_size_mb=5.0, max_latency_ms=1.0), size=10.0)
    assert verdict["state"] == "fail" and set(verdict["failed"]) == {"max_size_mb", "max_latency_ms"}


def test_the_configured_metric_is_the_one_judged():
    run = _run("s", 196)
    run = RunResult(**{**run.__dict__, "metrics": {"accuracy": 0.98, "macro_f1": 0.5}})
    verdict = _judge(run, DistillCriteria(metric="macro_f1", floor=0.9))
    assert verdict["reasons"][0].startswith("macro_f1")


def test_gain_over_control_is_paired_on_the_same_rows_and_divided_by_the_whole_cost():
    gain = gain_over(_run("s", 190), _run("c", 170, kind="finetune"), "accuracy", LABELS, 2, 0.95)
    assert gain.points == pytest.approx(10.0) and gain.n == 200 and gain.low <= 10.0 <= gain.high
    assert gain.p_value is not None  # McNemar on the 20 rows only the student got right
    cost = Cost(train_flops=2e14, eval_flops=3e14, provenance={"flops": "analytic", "energy": "not_measured"})
    units = per_unit(gain.to_dict(), cost)
    assert units["per_pflop"]["value"] == pytest.approx(10.0 / 0.5) and units["per_pflop"]["denominator"] == 0.5
    assert units["per_pflop"]["low"] == pytest.approx(gain.low / 0.5)
    assert units["per_kwh"] is None  # energy not measured: no ratio, not infinity


@pytest.mark.parametrize(
    ("flag", "hint"), [("acc=0.8", "Did you mean accuracy?"), ("macro=0.8", "Did you mean macro_f1?")]
)
def test_a_mistyped_target_metric_suggests_the_metric_meant(flag, hint):
    from advisor.errors import ConfigError
    from distill.cli import _extra, build_parser

    args = build_parser().parse_args(["--teacher", "x", "--target", flag])
    with pytest.raises(ConfigError, match=hint):
        build_distill_config(extra=_extra(args))


def test_criteria_flags_land_in_the_config():
    from distill.cli import _extra, build_parser

    argv = ["--teacher", "x", "--target", "macro_f1=0.8", "--min-retention", "0.97", "--max-latency-ms", "20",
            "--max-size-mb", "70", "--keep-control"]  # fmt: skip
    config = build_distill_config(extra=_extra(build_parser().parse_args(argv)))
    assert config.criteria == DistillCriteria(
        metric="macro_f1", floor=0.8, min_retention=0.97, max_latency_ms=20.0, max_size_mb=70.0
    )
    assert config.keep_control is True
