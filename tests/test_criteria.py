"""Verdicts, gains and budgets on crafted runs: the numbers and the words a user reads."""

from __future__ import annotations

import dataclasses

import pytest

from advisor.acceptance import AcceptanceCriteria
from advisor.errors import ConfigError
from advisor.evaluations import CrossValidation
from advisor.types import Candidate, Cost, Footprint, RunResult
from advisor.verdicts.criteria import (
    closest_failure,
    compute_metrics,
    gain,
    gain_per_kwh,
    gain_per_pflop,
    judge,
    run_interval,
    validate_metric_name,
)
from advisor.verdicts.stats import Interval
from tests.conftest import key_for

PROV = {"time": "measured", "flops": "analytic", "energy": "estimated", "emissions": "estimated"}


def make_run(
    run_id: str = "r1",
    accuracy: float | None = 0.874,
    status: str = "ok",
    params: int | None = 22_700_000,
    details: dict | None = None,
    cost: Cost | None = None,
    footprint: Footprint | None = None,
    message: str | None = None,
) -> RunResult:
    return RunResult(
        key=key_for(run_id),
        candidate=Candidate(run_id, "finetune", "local/minilm", params_total=params),
        hyperparameters={},
        status=status,  # type: ignore[arg-type]
        metrics={} if accuracy is None else {"accuracy": accuracy},
        cost=cost or Cost(),
        message=message,
        details=details or {},
        footprint=footprint or Footprint(),
    )


def iv(value: float, half: float, n: int = 500) -> Interval:
    return Interval(value, value - half, value + half, 0.95, n, "wilson")


def test_judge_gives_one_reason_per_criterion_and_fails_below_floor() -> None:
    crit = AcceptanceCriteria(metric="accuracy", floor=0.9, max_params=30_000_000, max_latency_ms=50, max_size_mb=50)
    v = judge(make_run(footprint=Footprint(latency_ms_p95=41.0, size_mb=87.0)), crit, iv(0.874, 0.02))
    assert not v.passed and v.state == "fail"
    assert set(v.failed) == {"floor", "max_size_mb"}
    # failing reasons first, so the first reason is what a table shows
    assert v.reasons[:2] == (
        "accuracy 0.874 [0.854, 0.894], n=500 at 95.0%: upper bound < 0.900",
        "size 87 MB > 50 MB",
    )
    assert "params 22.7M <= 30M" in v.reasons
    assert "p95 latency 41 ms <= 50 ms" in v.reasons
    assert v.shortfall == pytest.approx(0.026)


def test_judge_passes_when_every_criterion_holds() -> None:
    crit = AcceptanceCriteria(metric="accuracy", floor=0.85, max_params=30_000_000)
    v = judge(make_run(), crit, iv(0.874, 0.02))
    assert v.passed and v.state == "pass" and v.failed == () and v.shortfall == 0.0
    assert v.reasons == ("accuracy 0.874 [0.854, 0.894], n=500 at 95.0%: lower bound >= 0.850", "params 22.7M <= 30M")
    assert v.interval is not None and v.interval["n"] == 500


def test_a_pass_is_never_given_when_the_lower_bound_is_below_the_floor() -> None:
    crit = AcceptanceCriteria(metric="accuracy", floor=0.85)
    straddles = judge(make_run(), crit, iv(0.874, 0.03))
    assert straddles.state == "undecided" and not straddles.passed and straddles.failed == ()
    assert straddles.rows_needed is not None and straddles.rows_needed > 500
    assert "undecided" in straddles.reasons[0]
    # without an interval nothing can be shown to clear the floor
    assert judge(make_run(), crit).state == "undecided"
    # the old point-estimate rule, kept for the reliability benchmark, would have passed it
    assert judge(make_run(), crit, rule="point").passed


def test_the_interval_of_a_run_comes_from_its_predictions_or_the_baselines_cross_validation() -> None:
    labels = [0, 1] * 100
    preds = [0, 1] * 80 + [1, 0] * 20  # 160 of 200 right
    run = dataclasses.replace(make_run(accuracy=0.8), val_predictions=tuple(preds))
    got = run_interval(run, "accuracy", labels, 2, 0.95)
    assert got is not None and got.n == 200 and got.value == pytest.approx(0.8) and got.method == "wilson"
    assert got.low == pytest.approx(0.7391, abs=1e-3) and got.high == pytest.approx(0.8498, abs=1e-3)
    cv = CrossValidation(5, len(labels), labels * 5, preds * 5)
    base = dataclasses.replace(make_run("baseline", 0.8), cv=cv)
    tight = run_interval(base, "accuracy", labels, 2, 0.95)
    assert tight is not None and tight.n == 1000 and tight.high - tight.low < got.high - got.low


def test_judge_fails_a_ceiling_that_was_not_measured() -> None:
    v = judge(make_run(), AcceptanceCriteria(floor=0.5, max_latency_ms=50))
    assert not v.passed and v.failed == ("max_latency_ms",)
    assert "not measured" in v.reasons[0] and "latency" in v.reasons[0]


def test_judge_fails_a_run_that_is_not_ok_on_its_status() -> None:
    run = make_run(status="failed", accuracy=None, message="out of memory")
    v = judge(run, AcceptanceCriteria(floor=0.5))
    assert not v.passed and v.failed == ("status",)
    assert v.reasons == ("run failed: out of memory",)
    stopped = judge(
        make_run(status="stopped", accuracy=0.6, message="loss not decreasing"), AcceptanceCriteria(floor=0.8)
    )
    assert stopped.failed == ("status",) and stopped.shortfall == pytest.approx(0.2)


def test_judge_reports_a_missing_metric() -> None:
    run = make_run()
    v = judge(run, AcceptanceCriteria(metric="macro_f1", floor=0.5))
    assert not v.passed and v.reasons[0] == "macro_f1 not measured"


def test_closest_failure_names_the_nearest_miss() -> None:
    crit = AcceptanceCriteria(floor=0.9)
    verdicts = {
        r.run_id: judge(r, crit)
        for r in (
            make_run("far", 0.70),
            make_run("near", 0.88),
            make_run("broken", None, status="failed", message="crashed"),
        )
    }
    text = closest_failure(verdicts)
    assert "near" in text and "accuracy 0.880 has no interval" in text
    assert closest_failure({}) == "no run was judged"


def test_gain_in_points_and_per_unit_of_compute() -> None:
    cost = Cost(train_flops=2e15, energy_cpu_kwh=0.5, provenance=PROV)
    a, b = make_run("a", 0.90, cost=cost), make_run("b", 0.85)
    assert gain(a, b, "accuracy") == pytest.approx(5.0)
    assert gain(a, None, "accuracy") is None
    assert gain(a, b, "macro_f1") is None
    assert gain_per_pflop(5.0, cost) == pytest.approx(2.5)
    assert gain_per_kwh(5.0, cost) == pytest.approx(10.0)


def test_gain_per_unit_is_none_without_a_meaningful_denominator() -> None:
    assert gain_per_pflop(5.0, Cost()) is None
    baseline = Cost(train_flops=0.0, energy_cpu_kwh=0.1, provenance={"flops": "not_applicable", "energy": "estimated"})
    assert gain_per_pflop(5.0, baseline) is None
    unmetered = Cost(train_flops=1e15, energy_cpu_kwh=0.1, provenance={"flops": "analytic", "energy": "not_measured"})
    assert gain_per_kwh(5.0, unmetered) is None
    assert gain_per_pflop(None, unmetered) is None


def test_unknown_metric_is_rejected_with_a_suggestion() -> None:
    validate_metric_name("macro_f1")
    with pytest.raises(ConfigError, match="Did you mean macro_f1"):
        validate_metric_name("macro-f1")
    with pytest.raises(ConfigError, match="two classes"):
        validate_metric_name("f1", num_labels=3)


def test_compute_metrics_matches_hand_counts() -> None:
    m = compute_metrics([0, 1, 1, 0], [0, 1, 0, 0], ["neg", "pos"])
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["precision"] == pytest.approx(1.0) and m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(2 / 3)
    multi = compute_metrics(["a", "b", "c"], ["a", "c", "c"], ["a", "b", "c"])
    assert multi["accuracy"] == pytest.approx(2 / 3)
    assert "f1" not in multi and multi["macro_f1"] == pytest.approx((1 + 0 + 2 / 3) / 3)
