from __future__ import annotations

import pytest

from advisor.outcome import Verdict
from advisor.types import Candidate, Cost, RunResult

CAND = Candidate(name="tiny", kind="finetune", source="x")


def test_costs_add_up_and_merge_provenance() -> None:
    a = Cost(
        wall_s=1,
        train_flops=10,
        tokens=5,
        energy_cpu_kwh=0.1,
        peak_rss_mb=100,
        provenance={"flops": "analytic", "energy": "estimated"},
    )
    b = Cost(
        wall_s=2,
        train_flops=0,
        tokens=1,
        energy_cpu_kwh=0.2,
        peak_rss_mb=50,
        provenance={"flops": "not_applicable", "energy": "estimated"},
    )
    c = a + b
    assert c.wall_s == 3 and c.train_flops == 10 and c.tokens == 6
    assert c.energy_kwh == pytest.approx(0.3)
    assert c.peak_rss_mb == 100
    assert c.provenance == {"flops": "analytic+not_applicable", "energy": "estimated"}
    assert sum([a, b]) == c


def test_cost_rejects_negative_and_unknown_provenance() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        Cost(wall_s=-1)
    with pytest.raises(ValueError, match="provenance"):
        Cost(provenance={"energy": "guessed"})


def test_run_result_refuses_inconsistent_states() -> None:
    with pytest.raises(ValueError, match="'ok' run must have metrics"):
        RunResult("r1", CAND, {}, "ok", {}, Cost())
    with pytest.raises(ValueError, match="cannot have metrics"):
        RunResult("r1", CAND, {}, "failed", {"accuracy": 0.5}, Cost(), message="boom")
    with pytest.raises(ValueError, match="must say why"):
        RunResult("r1", CAND, {}, "failed", {}, Cost())
    with pytest.raises(ValueError, match="must be a number"):
        RunResult("r1", CAND, {}, "ok", {"accuracy": float("nan")}, Cost())


def test_run_result_round_trips_through_dict() -> None:
    r = RunResult(
        "r1",
        CAND,
        {"learning_rate": 1e-4},
        "ok",
        {"accuracy": 0.9},
        Cost(wall_s=1.5),
        artifact="runs/r1/model",
        details={"size_mb": 3.0},
    )
    assert RunResult.from_dict(r.to_dict()) == r


def test_verdict_invariants() -> None:
    with pytest.raises(ValueError):
        Verdict("r", state="pass", reasons=("x",), failed=("accuracy",))
    with pytest.raises(ValueError):
        Verdict("r", state="fail", reasons=("x",))
    with pytest.raises(ValueError, match="pass/fail/undecided"):
        Verdict("r", state="maybe", reasons=("x",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot list failed"):
        Verdict("r", state="undecided", reasons=("x",), failed=("floor",))
