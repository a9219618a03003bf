from __future__ import annotations

import json

import pytest

from advisor.criteria import judge
from advisor.outcome import Verdict
from advisor.runkey import RunKey
from advisor.stats import Interval
from advisor.types import AcceptanceCriteria, Candidate, Cost, Footprint, RunResult

CAND = Candidate(name="tiny", kind="finetune", source="x")


def test_costs_add_up_and_merge_provenance() -> None:
    analytic, not_applicable = (
        {"flops": "analytic", "energy": "estimated"},
        {"flops": "not_applicable", "energy": "estimated"},
    )
    a = Cost(wall_s=1, train_flops=10, tokens=5, energy_cpu_kwh=0.1, peak_rss_mb=100, provenance=analytic)
    b = Cost(wall_s=2, train_flops=0, tokens=1, energy_cpu_kwh=0.2, peak_rss_mb=50, provenance=not_applicable)
    c = a + b
    assert c.wall_s == 3 and c.train_flops == 10 and c.tokens == 6
    assert c.energy_kwh == pytest.approx(0.3)
    assert c.peak_rss_mb == 100
    assert c.provenance == {"flops": "analytic+not_applicable", "energy": "estimated"}
    assert sum([a, b]) == c


R1 = RunKey("trial", "r", 1)


def test_cost_rejects_negative_and_unknown_provenance() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        Cost(wall_s=-1)
    with pytest.raises(ValueError, match="provenance"):
        Cost(provenance={"energy": "guessed"})


def test_run_result_refuses_inconsistent_states() -> None:
    with pytest.raises(ValueError, match="'ok' run must have metrics"):
        RunResult(R1, CAND, {}, "ok", {}, Cost())
    with pytest.raises(ValueError, match="cannot have metrics"):
        RunResult(R1, CAND, {}, "failed", {"accuracy": 0.5}, Cost(), message="boom")
    with pytest.raises(ValueError, match="must say why"):
        RunResult(R1, CAND, {}, "failed", {}, Cost())
    with pytest.raises(ValueError, match="must be a number"):
        RunResult(R1, CAND, {}, "ok", {"accuracy": float("nan")}, Cost())


def test_run_result_round_trips_through_dict() -> None:
    r = RunResult(
        R1,
        CAND,
        {"learning_rate": 1e-4},
        "ok",
        {"accuracy": 0.9},
        Cost(wall_s=1.5),
        artifact="runs/r1/model",
        details={"early_stop": "at step 40"},
        footprint=Footprint(size_mb=3.0, latency_ms_p50=1.0, latency_ms_p95=2.5, params=11_000, latency_device="cpu"),
    )
    assert RunResult.from_dict(r.to_dict()) == r
    assert RunResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_a_ledger_record_from_before_footprint_reads_size_latency_and_params_out_of_details() -> None:
    # a record as the previous version wrote it: no "footprint", the figures among the details
    old = {
        "run_id": "baseline",
        "candidate": {"name": "tfidf", "kind": "baseline", "source": "tfidf"},
        "hyperparameters": {"C": 4.0},
        "status": "ok",
        "metrics": {"accuracy": 0.8},
        "cost": {"wall_s": 2.0},
        "artifact": "runs/baseline/model.skops",
        "details": {
            "size_mb": 3.1,
            "latency_ms_p50": 0.2,
            "latency_ms_p95": 0.4,
            "params": 20_000,
            "latency_device": "cpu",
            "cv": {"accuracy": 0.79},
        },
    }
    run = RunResult.from_dict(old)
    assert run.footprint == Footprint(
        size_mb=3.1, latency_ms_p50=0.2, latency_ms_p95=0.4, params=20_000, latency_device="cpu"
    )
    assert run.details == {"cv": {"accuracy": 0.79}}  # the figures live in one place only
    # a ceiling judged on the old record reads the same figures a new record carries
    crit = AcceptanceCriteria(metric="accuracy", floor=0.5, max_size_mb=3.0, max_latency_ms=1.0)
    verdict = judge(run, crit, Interval(0.8, 0.75, 0.85, 0.95, 400, "wilson"))
    assert verdict.failed == ("max_size_mb",)
    assert any("size 3.1 MB > 3 MB" in r for r in verdict.reasons)
    # an old record with none of the figures (a failed run) gets an empty footprint
    failed = {**old, "status": "failed", "metrics": {}, "message": "boom", "details": {}}
    assert RunResult.from_dict(failed).footprint == Footprint()


def test_footprint_refuses_a_negative_or_nan_figure() -> None:
    with pytest.raises(ValueError, match="Footprint.size_mb must be a number >= 0"):
        Footprint(size_mb=-1.0)
    with pytest.raises(ValueError, match="Footprint.latency_ms_p95"):
        Footprint(latency_ms_p95=float("nan"))


def test_verdict_invariants() -> None:
    with pytest.raises(ValueError):
        Verdict("r", state="pass", reasons=("x",), failed=("accuracy",))
    with pytest.raises(ValueError):
        Verdict("r", state="fail", reasons=("x",))
    with pytest.raises(ValueError, match="pass/fail/undecided"):
        Verdict("r", state="maybe", reasons=("x",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot list failed"):
        Verdict("r", state="undecided", reasons=("x",), failed=("floor",))
