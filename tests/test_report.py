"""Reports render what the climb decided, with every cost next to its provenance, and are safe to open."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from advisor.acceptance import AcceptanceCriteria
from advisor.errors import RunDirError
from advisor.outcome import REPORT_SCHEMA_VERSION, Report
from advisor.report.card import model_card
from advisor.report.pages import to_html, to_markdown, write_reports
from advisor.report.render import rung_rows, to_json, to_table
from advisor.runkey import RunKey
from advisor.types import Candidate, Cost, Footprint, RunResult
from advisor.verdicts.criteria import judge, run_interval
from advisor.verdicts.gains import run_gains

CRIT = AcceptanceCriteria(metric="accuracy", floor=0.80, max_latency_ms=50, budget_pflops=10.0)
N = 1000
LABELS = [i % 2 for i in range(N)]


def preds(accuracy: float, seed: int) -> tuple[int, ...]:
    """Predictions right on exactly accuracy * N of LABELS."""
    import random

    wrong = set(random.Random(seed).sample(range(N), N - round(accuracy * N)))
    return tuple(1 - y if i in wrong else y for i, y in enumerate(LABELS))


def _cost(pflops: float, kwh: float, grams: float, wall: float, flops_prov: str = "analytic") -> Cost:
    return Cost(
        wall_s=wall,
        train_flops=pflops * 1e15,
        energy_cpu_kwh=kwh,
        emissions_g=grams,
        device="cpu (2 threads)",
        location="USA",
        provenance={"time": "measured", "flops": flops_prov, "energy": "estimated", "emissions": "estimated"},
    )


def make_report(top_name: str = "minilm-l6", recommend: bool = True) -> Report:
    base = RunResult(
        RunKey("baseline"),
        Candidate("baseline", "baseline", "tfidf+logreg", params_total=20_000),
        {"C": 4.0},
        "ok",
        {"accuracy": 0.70},
        _cost(0.0, 1e-5, 0.004, 2.0, flops_prov="not_applicable"),
        artifact="runs/baseline/model.skops",
        test_metrics={"accuracy": 0.75},
        footprint=Footprint(size_mb=3.1, latency_ms_p95=0.4),
        val_predictions=preds(0.70, 0),
    )
    l3 = Candidate("minilm-l3", "finetune", "paraphrase-MiniLM-L3-v2", params_total=17_400_000)
    l3_best = RunResult(
        RunKey("trial", "l3", 0),
        l3,
        {"learning_rate": 1e-4},
        "ok",
        {"accuracy": 0.74},
        _cost(0.3, 0.002, 0.8, 120),
        footprint=Footprint(latency_ms_p95=12.0),
        val_predictions=preds(0.74, 1),
    )
    l3_other = RunResult(
        RunKey("trial", "l3", 1),
        l3,
        {"learning_rate": 3e-4},
        "stopped",
        {"accuracy": 0.70},
        _cost(0.1, 0.001, 0.3, 50),
        message="loss not decreasing",
        val_predictions=preds(0.70, 2),
    )
    l6 = RunResult(
        RunKey("trial", "l6", 0),
        Candidate(top_name, "finetune", "sentence-transformers/all-MiniLM-L6-v2", params_total=22_700_000, layers=6),
        {"learning_rate": 1e-4},
        "ok",
        {"accuracy": 0.85},
        _cost(1.2, 0.006, 2.4, 300),
        artifact="model",
        test_metrics={"accuracy": 0.80, "macro_f1": 0.79},
        details={"numpy_value": np.float32(1.5)},
        footprint=Footprint(latency_ms_p95=21.0),
        val_predictions=preds(0.85, 3),
        intervals={
            "validation": {
                "accuracy": {"value": 0.85, "low": 0.83, "high": 0.87, "level": 0.95, "n": N, "method": "wilson"}
            }
        },
    )
    skipped = RunResult(
        RunKey("trial", "mpnet", 0),
        Candidate("mpnet", "finetune", "x/y"),
        {},
        "skipped",
        {},
        Cost(),
        message="over budget",
    )
    runs = (l3_best, l3_other, l6, skipped)
    verdicts = {r.run_id: judge(r, CRIT, run_interval(r, "accuracy", LABELS, 2, 0.95)) for r in (base, *runs)}
    return Report(
        task="text-classification",
        dataset={"name": "uncertainty", "label_names": ["certain", "uncertain"]},
        criteria=CRIT,
        baseline=base,
        runs=runs,
        verdicts=verdicts,
        recommendation="l6-t0" if recommend else None,
        stop_reason="l6-t0 met the criteria" if recommend else "ladder exhausted",
        total_cost=sum((r.cost for r in (base, *runs)), Cost()),
        config={"metering": {"codecarbon": True}},
        details={
            "disk_freed_mb": 120.5,
            "low_carbon_alternatives": [
                {
                    "region": "aws:eu-north-1",
                    "location": "Stockholm, SWE",
                    "g_per_kwh": 27.0,
                    "emissions_g": 0.3,
                    "saving_g": 3.8,
                    "source": "ENTSO-E zone SE3",
                }
            ],
            "gains": run_gains(base, runs, LABELS, 2, CRIT),
        },
    )


def test_rows_give_gains_over_baseline_and_previous_rung() -> None:
    rows = {r["run_id"]: r for r in rung_rows(make_report())}
    assert list(rows) == ["baseline", "l3-t0", "l3-t1", "l6-t0", "mpnet-t0"]
    assert rows["baseline"]["train_pflops"] is None  # FLOPs of a TF-IDF fit are not applicable
    assert rows["l3-t0"]["gain_vs_baseline"] == pytest.approx(4.0)
    assert rows["l3-t0"]["gain_vs_previous"] == pytest.approx(4.0)  # the first rung is compared with the baseline
    # the next rung is compared with the previous rung's best trial, not with its last one
    assert rows["l6-t0"]["gain_vs_previous"] == pytest.approx(11.0)
    assert rows["l6-t0"]["gain_vs_previous_real"] is True
    assert rows["l6-t0"]["gain_per_pflop"] == pytest.approx(11.0 / 1.2)
    assert rows["l6-t0"]["gain_per_kwh"] == pytest.approx(11.0 / 0.006)
    assert rows["l6-t0"]["verdict"] == "PASS" and rows["l6-t0"]["recommended"]
    assert (rows["l6-t0"]["low"], rows["l6-t0"]["high"], rows["l6-t0"]["n"]) == (0.83, 0.87, N)
    assert rows["l3-t0"]["verdict"] == "FAIL" and rows["l3-t0"]["reason"].endswith("upper bound < 0.800")
    assert rows["l6-t0"]["provenance"]["flops"] == "analytic"
    assert rows["mpnet-t0"]["kwh"] is None and rows["mpnet-t0"]["reason"] == "run skipped: over budget"


def test_json_has_the_documented_schema_and_serialises() -> None:
    doc = to_json(make_report())
    for key in (
        "schema_version",
        "task",
        "dataset",
        "criteria",
        "recommendation",
        "stop_reason",
        "baseline",
        "runs",
        "total_cost",
        "details",
        "config",
    ):
        assert key in doc
    assert doc["schema_version"] == REPORT_SCHEMA_VERSION
    assert doc["recommendation"]["run_id"] == "l6-t0"
    assert set(doc["recommendation"]) >= {"candidate", "metrics", "test_metrics", "artifact"}
    run = doc["runs"][2]
    for key in ("candidate", "hyperparameters", "status", "metrics", "test_metrics", "cost", "verdict", "details"):
        assert key in run
    assert run["cost"]["provenance"]["flops"] == "analytic"
    assert run["verdict"]["passed"] is True
    assert run["details"]["numpy_value"] == 1.5
    assert doc["baseline"]["cost"]["provenance"]["flops"] == "not_applicable"
    text = json.dumps(doc, allow_nan=False)
    assert json.loads(text)["runs"][0]["gain"]["vs_baseline"]["points"] == pytest.approx(4.0)
    assert run["verdict"]["state"] == "pass" and run["verdict"]["interval"]["n"] == N
    assert run["intervals"]["validation"]["accuracy"]["low"] == 0.83


def test_json_without_recommendation_has_null() -> None:
    assert to_json(make_report(recommend=False))["recommendation"] is None


def test_table_is_aligned_with_short_verdicts_and_the_reasons_listed_below() -> None:
    text = to_table(make_report())
    lines = text.splitlines()
    header, rule = lines[0], lines[1]
    assert "train PFLOPs" in header and "pts/PFLOP" in header and "prov." in header
    # every column starts where the header's column starts
    starts = [m.start() for m in re.finditer(r"-+", rule)]
    verdict_col = header.index("verdict")
    assert verdict_col in starts
    body = lines[2:7]
    assert all(line[verdict_col:].startswith(("PASS", "FAIL")) for line in body)
    # short verdict cells: the reasons are listed below the table in the Markdown and HTML reports
    assert all(line[verdict_col:].strip() in ("PASS", "FAIL", "UNDECIDED") for line in body)
    md = to_markdown(make_report())
    assert "FAIL: accuracy 0.740 [" in md and "upper bound < 0.800" in md
    assert "0.850 [0.830, 0.870] n=1000" in text
    assert "n/a/e/e" in text  # the baseline's FLOPs are labelled not applicable


def test_markdown_keeps_the_table_intact_with_odd_names() -> None:
    md = to_markdown(make_report(top_name="a|b <img src=x>"))
    assert "a\\|b &lt;img src=x>" in md
    assert "<img" not in md
    assert "upper bound < 0.800" in md  # comparisons stay readable


def test_html_is_self_contained_and_escapes_user_strings() -> None:
    page = to_html(make_report(top_name="<script>alert(1)</script>"))
    assert "<table>" in page and "<style>" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    found = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert found is not None
    assert base64.b64decode(found.group(1)).startswith(b"\x89PNG")
    assert "http://" not in page and "https://" not in page  # nothing fetched when opened


def test_html_renders_when_nothing_was_trained() -> None:
    report = make_report(recommend=False)
    bare = Report(report.task, report.dataset, report.criteria, report.baseline, (), {}, None, "baseline only", Cost())
    assert "data:image/png;base64," in to_html(bare)


def test_model_card_front_matter_is_hub_metadata() -> None:
    report = make_report()
    card = model_card(report, report.run("l6-t0"))
    assert card.startswith("---\n")
    meta = yaml.safe_load(card.split("---\n")[1])
    result = meta["model-index"][0]["results"][0]
    assert result["task"]["type"] == "text-classification"
    assert result["dataset"]["name"] == "uncertainty" and result["dataset"]["split"] == "test"
    assert {"type": "accuracy", "value": 0.8, "name": "test accuracy"} in result["metrics"]
    co2 = meta["co2_eq_emissions"]
    assert co2["emissions"] == pytest.approx(2.4)
    assert co2["source"] == "codecarbon" and co2["training_type"] == "fine-tuning"
    assert co2["geographical_location"] == "USA" and co2["hardware_used"] == "cpu (2 threads)"
    assert meta["license"] == "unknown" and meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "PASS" in card and "pipeline(" in card and "estimated" in card


def test_model_card_for_the_baseline_says_how_to_load_it_with_skops() -> None:
    report = make_report()
    card = model_card(report, report.baseline)  # type: ignore[arg-type]
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["library_name"] == "sklearn" and "base_model" not in meta
    assert "skops.io" in card and "model.skops" in card
    assert "| training compute, PFLOPs | n/a |" in card


def test_write_reports_writes_three_files_atomically(tmp_path: Path) -> None:
    paths = write_reports(make_report(), tmp_path / "run")
    assert set(paths) == {"json", "markdown", "html"}
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["report.html", "report.json", "report.md"]
    assert json.loads(paths["json"].read_text())["recommendation"]["run_id"] == "l6-t0"
    # a second write replaces the files and still leaves no temporary names behind
    write_reports(make_report(recommend=False), tmp_path / "run")
    assert len(list((tmp_path / "run").iterdir())) == 3
    assert json.loads(paths["json"].read_text())["recommendation"] is None


def test_write_reports_into_a_file_raises_rundir_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(RunDirError, match="Cannot write the reports"):
        write_reports(make_report(), blocker)


def test_schema_document_names_every_field_to_json_writes() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "report-schema.md").read_text(encoding="utf-8")
    out = to_json(make_report())
    for key in [*out, *out["runs"][0], *out["runs"][0]["cost"]]:
        assert f"`{key}`" in doc, key


def test_a_report_reads_back_from_its_json_through_the_record_that_wrote_it() -> None:
    """--from reads the earlier report.json as a Report: the same runs, verdicts, criteria and pick."""
    report = make_report()
    back = Report.from_json(json.loads(json.dumps(to_json(report))))
    assert back.recommendation == report.recommendation and back.recommended == report.recommended
    assert back.runs == report.runs and back.baseline == report.baseline
    assert back.verdicts == report.verdicts and back.criteria == report.criteria
    assert back.total_cost == report.total_cost and back.dataset == report.dataset
    # a report written before runs carried their key, or verdicts their floor_met, still reads back
    old = to_json(report)
    for entry in [old["baseline"], *old["runs"]]:
        entry.pop("key")
        if entry.get("verdict"):
            entry["verdict"].pop("floor_met")
    legacy = Report.from_json(old)
    assert [r.key for r in legacy.runs] == [r.key for r in report.runs]
    assert legacy.recommended is not None and legacy.recommended.run_id == report.recommendation
    with pytest.raises(ValueError, match="not one of its runs"):
        Report.from_json({**old, "recommendation": {"run_id": "no-such-run"}})


def test_from_refuses_a_report_it_cannot_read_back_in_one_line(tmp_path: Path) -> None:
    from advisor.incremental.inputs import previous_recommendation

    (tmp_path / "report.json").write_text(json.dumps({"recommendation": {"run_id": "gone-t1"}, "runs": []}))
    with pytest.raises(RunDirError, match="not a report this greenladder can read") as err:
        previous_recommendation(tmp_path, None)  # type: ignore[arg-type]
    assert "\n" not in str(err.value) and "--from" in str(err.value)
