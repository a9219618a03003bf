from __future__ import annotations

import dataclasses
import json

import pytest

from advisor.acceptance import AcceptanceCriteria
from advisor.evaluations import CrossValidation
from advisor.outcome import Verdict
from advisor.runkey import RunKey
from advisor.types import Candidate, Cost, Footprint, RunResult
from advisor.verdicts.criteria import judge
from advisor.verdicts.stats import Interval

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
            "cv": {"folds": 5, "train_size": 2, "labels": [0, 1], "predictions": [0, 0]},
        },
    }
    run = RunResult.from_dict(old)
    assert run.footprint == Footprint(
        size_mb=3.1, latency_ms_p50=0.2, latency_ms_p95=0.4, params=20_000, latency_device="cpu"
    )
    assert run.details == {}  # the figures live in one place only: the footprint, the typed cross-validation
    assert run.cv == CrossValidation(5, 2, (0, 1), (0, 0))
    assert RunResult.from_dict(run.to_dict()) == run and run.to_dict()["details"]["cv"]["labels"] == [0, 1]
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


def _rich_run() -> RunResult:
    """A run whose mappings nest: what a baseline's record holds (cv labels, intervals, a history)."""
    return RunResult(
        R1,
        CAND,
        {"learning_rate": 1e-4, "layers": [0, 1]},
        "ok",
        {"accuracy": 0.9},
        Cost(wall_s=1.5, provenance={"time": "measured", "flops": "analytic"}),
        test_metrics={"accuracy": 0.88},
        details={"split": {"labels": [0, 1, 1], "folds": 5}, "eval_history": [{"step": 10, "accuracy": 0.8}]},
        intervals={"validation": {"accuracy": {"value": 0.9, "low": 0.85, "high": 0.94, "n": 400}}},
        val_predictions=(0, 1, 1),
    )


def test_a_records_mappings_are_read_only_all_the_way_down() -> None:
    run = _rich_run()
    with pytest.raises(TypeError):
        run.metrics["accuracy"] = 1.0  # type: ignore[index]
    with pytest.raises(TypeError):
        run.test_metrics["accuracy"] = 1.0  # type: ignore[index]
    with pytest.raises(TypeError):
        run.hyperparameters["learning_rate"] = 1.0  # type: ignore[index]
    with pytest.raises(TypeError):
        run.details["split"]["labels"] = [1, 1, 1]
    with pytest.raises(TypeError):
        run.details["split"]["labels"][0] = 1  # a list inside is a tuple
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.evaluations[0].value = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        run.intervals["validation"]["accuracy"]["low"] = 0.0  # type: ignore[index]
    with pytest.raises(TypeError):
        del run.details["split"]  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        run.cost.provenance["flops"] = "measured"  # type: ignore[index]
    assert not hasattr(run.details, "update") and not hasattr(run.metrics, "pop")
    # what the caller passed in is copied, not kept: changing it later leaves the record alone
    metrics = {"accuracy": 0.5}
    kept = RunResult(R1, CAND, {}, "ok", metrics, Cost())
    metrics["accuracy"] = 0.99
    assert kept.metrics["accuracy"] == 0.5


def test_verdict_and_report_mappings_are_read_only() -> None:
    from advisor.outcome import Report

    verdict = Verdict("r-t1", "pass", ("ok",), interval={"value": 0.9, "low": 0.85, "high": 0.94, "n": 400})
    assert verdict.interval is not None
    with pytest.raises(TypeError):
        verdict.interval["low"] = 0.0  # type: ignore[index]
    run = _rich_run()
    report = Report(
        task="t",
        dataset={"splits": {"validation": {"rows": 400}}},
        criteria=AcceptanceCriteria(),
        baseline=None,
        runs=(run,),
        verdicts={run.run_id: verdict},
        recommendation=run.run_id,
        stop_reason="met",
        total_cost=run.cost,
        details={"budgets": {"pflops": {"spent": 1.0}}},
    )
    with pytest.raises(TypeError):
        report.verdicts["x"] = verdict  # type: ignore[index]
    with pytest.raises(TypeError):
        report.details["budgets"]["pflops"]["spent"] = 2.0
    with pytest.raises(TypeError):
        report.dataset["splits"]["validation"]["rows"] = 1
    assert report.verdicts[run.run_id] is verdict


def test_to_dict_gives_plain_dicts_and_lists_and_round_trips() -> None:
    import pickle

    from advisor.frozen import FrozenMap

    run = _rich_run()
    d = run.to_dict()

    def frozen_inside(x: object) -> bool:
        if isinstance(x, dict):
            return any(frozen_inside(v) for v in x.values())
        if isinstance(x, list):
            return any(frozen_inside(v) for v in x)
        return isinstance(x, (FrozenMap, tuple))

    assert not frozen_inside(d)
    assert d["details"]["split"]["labels"] == [0, 1, 1]
    assert d["cost"]["provenance"] == {"time": "measured", "flops": "analytic"}
    json.dumps(d)  # raises on anything JSON cannot write
    assert RunResult.from_dict(d) == run
    assert RunResult.from_dict(json.loads(json.dumps(d))) == run
    # the dict is the caller's own: editing it leaves the record alone
    d["details"]["split"]["labels"].append(0)
    assert run.details["split"]["labels"] == (0, 1, 1)
    verdict = Verdict("r-t1", "undecided", ("straddles",), interval={"value": 0.9, "n": 400})
    assert type(verdict.to_dict()["interval"]) is dict
    json.dumps(verdict.to_dict())
    # records travel pickled between the ranks of a multi-GPU job (advisor.distributed.share)
    assert pickle.loads(pickle.dumps(run)) == run
    assert pickle.loads(pickle.dumps(verdict)) == verdict


def test_a_cross_validation_is_a_typed_field_and_rows_need_their_labels() -> None:
    cv = CrossValidation(5, 4, [0, 1, 1], [0, 1, 0])
    run = RunResult(R1, CAND, {}, "ok", {"accuracy": 0.9}, Cost(), cv=cv)
    assert run.cv is cv and run.cv.labels == (0, 1, 1) and "cv" not in run.details
    assert RunResult.from_dict(run.to_dict()) == run
    with pytest.raises(ValueError, match="every row predicted needs its label"):
        CrossValidation(5, 4, [0, 1, 1], [0, 1])


def test_evaluations_and_training_rows_are_typed_fields_written_as_report_json_always_had_them() -> None:
    from advisor.evaluations import Evaluation

    old = {
        **_rich_run().to_dict(),
        "details": {"train_examples": 400, "eval_history": [{"step": 13, "macro_f1": 0.7, "eval_loss": 0.6}]},
    }
    run = RunResult.from_dict(old)
    assert run.train_examples == 400 and run.evaluations == (Evaluation(13, "macro_f1", 0.7, 0.6),)
    assert run.details == {} and run.to_dict()["details"] == old["details"]


def test_a_reports_outcome_closest_run_and_next_cost_are_typed_fields_written_where_they_always_were() -> None:
    from advisor.outcome import Report
    from advisor.report.render import to_json

    run = RunResult(R1, CAND, {}, "ok", {"accuracy": 0.9}, Cost())
    old_style = {"outcome": "budget", "closest": run.run_id, "next_cost": {"train_flops": 2e15}}
    report = Report(
        "text-classification", {}, AcceptanceCriteria(), None, (run,), {}, None, "stopped", Cost(), details=old_style
    )
    assert report.outcome == "budget" and report.closest == run.run_id and report.next_cost == Cost(train_flops=2e15)
    assert report.details == {}
    written = to_json(report)["details"]
    assert written["outcome"] == "budget" and written["closest"] == run.run_id and written["next_cost"]["flops"] == 2e15
    assert Report.from_json(to_json(report)).next_cost == report.next_cost
