"""The benchmark scripts on a user's own file: safe output names, --out, and nothing measured lost.

Argument handling and writers only (seconds): the scripts' measurements are exercised by running
them, not here (benchmarks print tables; they are not timed assertions).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from advisor.frozen import freeze
from tests.conftest import synthetic_rows, write_csv

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

#: script module -> the prefix of its result files
SCRIPTS = {
    "select_models": "select_models",
    "distill_bench": "distill",
    "distill_transfer": "distill_transfer",
    "throughput": "throughput",
    "metering_overhead": "metering_overhead",
    "tuning_vs_random": "tuning_vs_random",
    "step_cost": "step_cost",
    "verdict_reliability": "verdict_reliability",
    "pruner_check": "pruner_check",
}


def _module(name: str):  # type: ignore[no-untyped-def]
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


@pytest.fixture
def awkward_csv(tmp_path: Path) -> Path:
    """A CSV where a user might keep it: nested folders, spaces and dots in every part of the path."""
    folder = tmp_path / "my data" / "v1.2 final.d"
    folder.mkdir(parents=True)
    return write_csv(folder / "sentences v2.final.csv", synthetic_rows(40))


def _is_safe(name: str) -> bool:
    return all(ch.isalnum() or ch in "-_" for ch in name)


def test_data_slug_is_the_stem_and_a_hash_of_the_content(awkward_csv: Path, tmp_path: Path) -> None:
    common = _module("common")
    slug = common.data_slug(str(awkward_csv))
    stem, _, digest = slug.rpartition("-")
    assert stem == "sentences-v2-final" and len(digest) == 8 and _is_safe(slug)
    # the same bytes elsewhere name the same data; one changed row names other data
    copy = tmp_path / "elsewhere.d" / awkward_csv.name
    copy.parent.mkdir()
    copy.write_bytes(awkward_csv.read_bytes())
    assert common.data_slug(str(copy)) == slug
    write_csv(copy, synthetic_rows(41))
    assert common.data_slug(str(copy)) != slug
    # a built-in name stays what the user typed
    assert common.data_slug("uncertainty") == "uncertainty"


def test_data_slug_of_a_missing_file_says_what_to_give(tmp_path: Path) -> None:
    common = _module("common")
    with pytest.raises(common.BenchError, match="no such file or folder.*built-in"):
        common.data_slug(str(tmp_path / "no such dir" / "x.csv"))


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_each_script_names_its_outputs_from_the_data_slug(script: str, awkward_csv: Path, tmp_path: Path) -> None:
    mod, common = _module(script), _module("common")
    out = tmp_path / "results here.d"
    args = mod.parse_args(["--quick", "--data", str(awkward_csv), "--out", str(out)])
    slug = common.data_slug(str(awkward_csv))
    name, title = mod.result_name(args)
    assert name == f"{SCRIPTS[script]}-{slug}-quick"
    assert slug in title and str(awkward_csv.parent) not in title
    assert Path(args.out) == out
    if hasattr(mod, "split_name"):  # the temporary folder of the split every method reads
        assert mod.split_name(args).endswith(slug) and _is_safe(mod.split_name(args))
    writer = common.ResultsWriter(name, "cmd", args.out)
    assert writer.jsonl == out / f"{name}.jsonl" and writer.jsonl.is_file()


def test_split_folder_is_safe_even_from_a_raw_path(awkward_csv: Path) -> None:
    """A script that still passes the raw path to ``fixed_split`` gets a safe folder, not a nested one."""
    common = _module("common")
    data, folder = common.fixed_split(str(awkward_csv), f"x-{awkward_csv}", train_rows=10, eval_rows=4)
    assert folder.parent.name == "greenladder-bench" and _is_safe(folder.name)
    assert data.train.num_rows == 10


def test_results_default_to_benchmarks_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    common = _module("common")
    assert common.RESULTS == BENCHMARKS / "results"
    for script in SCRIPTS:
        assert _module(script).parse_args([]).out is None
    monkeypatch.setattr(common, "RESULTS", tmp_path / "default results")  # keep the repository clean
    assert common.ResultsWriter("x-quick", "cmd").jsonl == tmp_path / "default results" / "x-quick.jsonl"
    with pytest.raises(ValueError, match="safe file stem"):
        common.ResultsWriter("select_models-/some/dir/sentences.csv", "cmd", tmp_path)


def test_writer_failing_at_the_end_keeps_each_method_and_the_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = _module("common")
    out = tmp_path / "out dir"
    writer = common.ResultsWriter("select_models-sentences-0123abcd", "python benchmarks/x.py", out)
    rows = [{"method": "greenladder", "accuracy": 0.91}, {"method": "exhaustive grid", "accuracy": 0.93}]
    for row in rows:
        writer.record(row["method"], row)
        writer.show(f"after {row['method']}", [common.markdown_table(["method", "accuracy"], [list(row.values())])])
    # the final write fails: a folder sits where the Markdown file goes (as a full disk would fail it)
    (out / "select_models-sentences-0123abcd.md").mkdir()
    (out / "select_models-sentences-0123abcd.md" / "keep").write_text("x")
    table = common.markdown_table(["method", "accuracy"], [list(r.values()) for r in rows])
    with pytest.raises(
        common.BenchError, match=r"could not write .*0123abcd\.md .*tables are printed above.*0123abcd\.jsonl"
    ):
        writer.finish("Model selection", [table], ["a note"], rows)
    printed = capsys.readouterr().out
    assert "| exhaustive grid | 0.93 |" in printed and "| greenladder | 0.91 |" in printed
    lines = [json.loads(line) for line in writer.jsonl.read_text(encoding="utf-8").splitlines()]
    assert [(r["method"], r["result"]) for r in lines if r["event"] == "result"] == [(r["method"], r) for r in rows]
    assert not any(r["event"] == "finished" for r in lines)
    assert not list(out.glob(".*.md.*")), "a failed write leaves no temporary file behind"


def test_a_finished_run_writes_markdown_json_and_lines(tmp_path: Path) -> None:
    common = _module("common")
    writer = common.ResultsWriter("throughput-s-0123abcd-quick", "python benchmarks/throughput.py --quick", tmp_path)
    writer.record("HF Trainer", {"wall_s": 1.5})
    md = writer.finish("Throughput", ["| a |\n|---|\n| 1 |"], ["note"], {"rows": [1]})
    assert md == tmp_path / "throughput-s-0123abcd-quick.md"
    assert "| 1 |" in md.read_text(encoding="utf-8") and "- note" in md.read_text(encoding="utf-8")
    assert json.loads(md.with_suffix(".json").read_text(encoding="utf-8"))["results"] == {"rows": [1]}
    assert md.stat().st_mode & 0o777 == writer.jsonl.stat().st_mode & 0o777, "as readable as any file written here"
    events = [json.loads(line)["event"] for line in writer.jsonl.read_text(encoding="utf-8").splitlines()]
    assert events == ["start", "result", "finished"]


def test_a_records_details_among_the_results_are_written_as_json_objects(tmp_path: Path) -> None:
    common = _module("common")
    writer = common.ResultsWriter("eval_share-s-0123abcd", "python benchmarks/eval_share.py", tmp_path)
    details = freeze({"cv": {"labels": [0, 1]}, "best_step": 40})  # what run.details holds
    writer.record("trial", {"details": details})
    md = writer.finish("Eval share", [], [], [{"details": details}])
    assert json.loads(md.with_suffix(".json").read_text(encoding="utf-8"))["results"] == [
        {"details": {"cv": {"labels": [0, 1]}, "best_step": 40}}
    ]
    lines = [json.loads(line) for line in writer.jsonl.read_text(encoding="utf-8").splitlines()]
    assert [x["result"] for x in lines if x["event"] == "result"] == [
        {"details": {"cv": {"labels": [0, 1]}, "best_step": 40}}
    ]


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_a_missing_data_file_is_one_line_and_exit_2(
    script: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mod, common = _module(script), _module("common")
    out = tmp_path / "out"
    missing = tmp_path / "some dir" / "sentences.csv"
    assert common.run_cli(mod.main, ["--quick", "--data", str(missing), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such file or folder" in err and str(missing) in err
    assert not out.exists(), "nothing is written before the data are found"


def test_an_unwritable_out_fails_before_anything_is_measured(
    awkward_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common, mod = _module("common"), _module("step_cost")
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    assert common.run_cli(mod.main, ["--data", str(awkward_csv), "--out", str(blocker / "results")]) == 2
    captured = capsys.readouterr()
    assert "--out" in captured.err and "writable folder" in captured.err
    assert "step s" not in captured.out, "no step was timed"


# ----------------------------------------------------------------------------- judging, caches, work folders


def _task(labels_flip: int | None = None, n_val: int = 300):  # type: ignore[no-untyped-def]
    """A TaskData built in memory: 40 training rows, ``n_val`` validation and 20 test rows, two classes."""
    import datasets

    from advisor.data.task import TaskData

    def split(prefix: str, n: int) -> datasets.Dataset:
        labels = [i % 2 for i in range(n)]
        if prefix == "val" and labels_flip is not None:
            labels[labels_flip] = 1 - labels[labels_flip]
        return datasets.Dataset.from_dict({"text": [f"{prefix} text {i}" for i in range(n)], "label": labels})

    return TaskData(
        split("train", 40), split("val", n_val), split("test", 20), ("neg", "pos"), "memory", "text", "label"
    )


def _run(run_id: str, labels: list[int], right: int, **kw):  # type: ignore[no-untyped-def]
    """A finished fine-tuning run right on the first ``right`` validation rows (as train_run records it)."""
    from advisor.runkey import RunKey
    from advisor.types import Candidate, Cost, RunResult

    preds = [y if i < right else 1 - y for i, y in enumerate(labels)]
    candidate = Candidate(name=kw.pop("rung", "minilm-l3"), kind=kw.pop("kind", "finetune"), source="x")
    metrics = {"accuracy": right / len(labels)}
    return RunResult(
        RunKey("baseline") if run_id == "baseline" else RunKey("trial", run_id, 1),
        candidate,
        {"learning_rate": 1e-4},
        "ok",
        metrics,
        Cost(train_flops=1e12),
        val_predictions=preds,
        **kw,
    )


def _criteria(floor: float):  # type: ignore[no-untyped-def]
    from advisor.config.settings import build_config

    return build_config(overrides=[f"criteria.floor={floor}"]).criteria


def test_every_row_type_is_judged_by_its_lower_bound_as_advise_judges_it() -> None:
    """A run at 0.967 on 300 rows (Wilson 95% about [0.940, 0.982]): yes at 0.9, undecided at 0.95, no at 0.99."""
    import dataclasses

    from advisor.runkey import RunKey

    judging = _module("judging")
    labels = [i % 2 for i in range(300)]
    grid_run = _run("minilm-l3-lr0.0001-e3", labels, 290)
    reused = dataclasses.replace(
        grid_run, key=RunKey("trial", "minilm-l3", 0), details={"reused_from": "greenladder/minilm-l3-t1"}
    )
    flaml = judging.predictions_run(
        RunKey("trial", "flaml-best", 1),
        "minilm-l3",
        "/m",
        {"learning_rate": 1e-4, "num_train_epochs": None},
        grid_run.metrics,
        grid_run.val_predictions,
    )
    # greenladder's baseline is judged from its cross-validation over many more rows, as advise does
    cv_labels = [i % 2 for i in range(3000)]
    cv_preds = [y if i < 2900 else 1 - y for i, y in enumerate(cv_labels)]
    baseline = _run(
        "baseline",
        labels,
        290,
        rung="baseline",
        kind="baseline",
        details={"cv": {"labels": cv_labels, "predictions": cv_preds}},
    )
    for run in (grid_run, reused, flaml):
        states = [judging.judge_run(run, _criteria(f), labels, 2).state for f in (0.9, 0.95, 0.99)]
        assert states == ["pass", "undecided", "fail"], run.run_id
    cv_verdict = judging.judge_run(baseline, _criteria(0.95), labels, 2)
    assert cv_verdict.state == "pass"  # cv: 0.967 on 3,000 rows
    assert judging.interval_cell(0.9, cv_verdict.to_dict()).startswith("0.900; cv 0.967 [0.96")
    verdict = judging.judge_run(flaml, _criteria(0.9), labels, 2).to_dict()
    assert judging.verdict_cell(verdict) == "yes" and judging.interval_cell(0.967, verdict).startswith("0.967 [0.9")


def test_select_models_row_says_yes_for_a_passing_pick_and_keeps_the_closest_run_otherwise(tmp_path: Path) -> None:
    from advisor.config.settings import build_config
    from advisor.types import Cost

    sm = _module("select_models")
    data = _task()
    labels = list(data.validation["label"])
    runs = [_run("minilm-l3-a", labels, 285), _run("minilm-l6-b", labels, 295, rung="minilm-l6")]
    config = build_config(overrides=["criteria.floor=0.9"])
    row = sm.summarise("exhaustive grid", runs[1], {"accuracy": 0.95}, runs, Cost(train_flops=2e12), config, 10.0, data)
    assert row["meets_criteria"] is True and row["verdict"]["state"] == "pass" and row["closest"] is None
    assert row["pick"]["verdict"]["interval"]["low"] >= 0.9 and row["rungs_passing_on_validation"] == [
        "minilm-l3",
        "minilm-l6",
    ]
    strict = build_config(overrides=["criteria.floor=0.97"])
    none = sm.summarise("greenladder", None, None, runs, Cost(train_flops=2e12), strict, 10.0, data)
    assert none["meets_criteria"] is False and none["closest"]["run_id"] == "minilm-l6-b-t1"
    assert "straddles 0.970" in none["closest"]["verdict"]["reasons"][0]
    args = sm.parse_args(["--data", "spamassassin", "--target", "accuracy=0.97"])
    main, targets = sm.tables([{**none, "picked_hparams": None}, row], args)
    assert "| greenladder | none met the criteria |" in main and "| yes |" in main
    assert (
        "| selection overhead ≤ 2.5 (FLOPs) | n/a (no pick) | n/a |" in targets
        and "MISSED |" not in targets.split("\n")[2]
    )


def test_cache_key_follows_the_content_and_the_settings_not_the_name() -> None:
    common = _module("common")
    digest = common.data_digest(_task())
    assert common.data_digest(_task()) == digest  # the same rows read again
    assert common.data_digest(_task(labels_flip=7)) != digest  # one validation label changed
    settings = {"epochs": 3.0, "learning_rate": 2e-4}
    key = common.cache_key(digest, settings)
    assert common.cache_key(common.data_digest(_task(labels_flip=7)), settings) != key
    assert common.cache_key(digest, {**settings, "epochs": 1.0}) != key
    assert common.cache_key(digest, dict(reversed(settings.items()))) == key
    # a record's read-only mapping among the settings keys as the dict it holds, not as its repr
    nested = {"hyperparameters": {"learning_rate": 2e-4, "layers": [0, 1]}}
    assert common.cache_key(digest, {"x": freeze(nested)}) == common.cache_key(digest, {"x": nested})


def test_reliability_cache_ignores_rows_keyed_on_name_and_seed_only(tmp_path: Path) -> None:
    vr = _module("verdict_reliability")
    cache = tmp_path / "runs.jsonl"
    old = {"dataset": "uncertainty", "seed": 0, "run": {"run_id": "baseline"}}
    new = {**old, "key": "abc"}
    cache.write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n", encoding="utf-8")
    assert vr.read_cache(cache) == [new]


def test_work_folder_is_kept_under_work_and_fresh_each_time(tmp_path: Path) -> None:
    common = _module("common")
    with common.work_folder(None, "select-x-") as temporary:
        (temporary / "model").mkdir()
    assert not temporary.exists(), "without --work the folder is temporary"
    with common.work_folder(tmp_path / "runs here", "select-x-") as first:
        (first / "report.json").write_text("{}")
    with common.work_folder(tmp_path / "runs here", "select-x-") as second:
        pass
    assert (first / "report.json").is_file() and second != first and second.parent == first.parent


def test_an_attached_report_lands_beside_the_results(tmp_path: Path) -> None:
    common = _module("common")
    writer = common.ResultsWriter("select_models-x-0123abcd", "cmd", tmp_path)
    path = writer.attach("greenladder-report.json", '{"a": 1}')
    assert path == tmp_path / "select_models-x-0123abcd-greenladder-report.json" and json.loads(path.read_text()) == {
        "a": 1
    }
    with pytest.raises(ValueError, match="safe file name"):
        writer.attach("../report.json", "{}")


def test_other_settings_or_data_never_take_the_committed_results_name(awkward_csv: Path) -> None:
    sm, vr = _module("select_models"), _module("verdict_reliability")
    assert sm.result_name(sm.parse_args(["--data", "spamassassin"]))[0] == "select_models-spamassassin"
    assert sm.result_name(sm.parse_args(["--data", "spamassassin", "--seed", "1"]))[0].startswith(
        "select_models-spamassassin-set"
    )
    assert vr.result_name(vr.parse_args([]))[0] == "verdict_reliability"
    slug = _module("common").data_slug(str(awkward_csv))
    assert vr.result_name(vr.parse_args(["--data", str(awkward_csv)]))[0] == f"verdict_reliability-{slug}"
    assert vr.result_name(vr.parse_args(["--train-rows", "600"]))[0].startswith("verdict_reliability-set")


def test_threads_default_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    common = _module("common")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert common.default_threads() == 3
    for script in ("select_models", "verdict_reliability"):
        assert _module(script).parse_args([]).threads is None
        assert _module(script).parse_args(["--threads", "1"]).threads == 1


def _trial(lr: float, rows_right: list[int], final: float) -> dict:
    """A recorded trial: 64 sampled rows, right on the first ``k`` at each of its three evaluations."""
    labels = [i % 2 for i in range(64)]
    evals = [
        {"step": 13 * (i + 1), "value": k / 64, "predictions": [y if j < k else 1 - y for j, y in enumerate(labels)]}
        for i, k in enumerate(rows_right)
    ]
    return {
        "rung": "minilm-l6",
        "learning_rate": lr,
        "status": "ok",
        "final": final,
        "train_flops": 3e12,
        "total_steps": 39,
        "eval_steps": 13,
        "labels": labels,
        "num_labels": 2,
        "evals": evals,
    }


def test_pruner_check_replays_the_median_pruner_stopping_the_best_trial_and_the_paired_one_not() -> None:
    """The issue's case by hand: lr 3e-4 starts 3 rows behind lr 1e-4, then ends the rung's best."""
    check = _module("pruner_check")
    trials = [_trial(1e-4, [45, 46, 47], 0.733), _trial(3e-4, [42, 48, 49], 0.753), _trial(3e-5, [20, 22, 24], 0.4)]
    assert check.replay(trials, (0, 1, 2), "median (before)", "accuracy", 0.95) == [None, 13, 13]
    assert check.replay(trials, (0, 1, 2), "paired (now)", "accuracy", 0.95) == [None, None, 13]
    rows, raw = check.summarise("minilm-l6", trials, "accuracy", 0.95)
    median, paired = rows
    assert raw["best_trial"] == 3e-4 and median[4] != "0 of 6" and paired[4] == "0 of 6" and paired[5] == 0
    assert paired[3] != "0 of 18", "the paired pruner still stops the trial that is far behind"


def test_pruner_check_recorder_is_handed_each_evaluation_as_the_pruner_is() -> None:
    """train_run hands the best-weight keeper to RunWatchers only: a plain callback recorded nothing."""
    import numpy as np

    from advisor.training.stopping import watch_evaluations

    check = _module("pruner_check")
    recorder = check.Recorder("accuracy")
    keeper = type("Keeper", (), {"latest": (np.array([0, 1, 1]), np.array([0, 1, 0]))})()
    watch_evaluations([recorder], keeper, 2)
    recorder.on_evaluate(
        type("A", (), {"eval_steps": 13})(), type("S", (), {"global_step": 13})(), None, {"eval_accuracy": 0.667}
    )
    assert recorder.evals == [{"step": 13, "value": 0.667, "predictions": [0, 1, 0]}] and recorder.labels == [0, 1, 1]


def test_select_models_resume_runs_only_the_missing_methods_with_the_recorded_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common, sm = _module("common"), _module("select_models")
    args = sm.parse_args(
        ["--data", "bbc-news", "--resume", "--methods", "greenladder,flaml", "--flaml-multiples", "1,3"]
    )
    args.data_sha256 = "a" * 64
    name = sm.result_name(args)[0]
    earlier = common.ResultsWriter(name, "cmd", tmp_path)
    gl = {"method": "greenladder", "wall_s": 100.0, "picked": None}
    earlier.record("greenladder", gl)
    earlier.record("FLAML (1x greenladder's time)", {"method": "FLAML (1x greenladder's time)", "wall_s": 99.0})
    budgets: list[float] = []

    def flaml(args, folder, work, data, budget_s, label):  # type: ignore[no-untyped-def]
        budgets.append(budget_s)
        return {"method": label, "wall_s": budget_s}

    monkeypatch.setattr(sm, "run_flaml", flaml)
    monkeypatch.setattr(sm, "run_greenladder", lambda *a: pytest.fail("greenladder was recorded: read back"))
    monkeypatch.setattr(sm, "tables", lambda rows, args: [])
    writer = common.ResultsWriter(name, "cmd", tmp_path)
    assert writer.run_started != earlier.run_started
    rows = sm.run_methods(args, tmp_path, tmp_path, None, writer, "t")
    assert budgets == [300.0], "only the 3x arm ran, its budget from greenladder's recorded wall time"
    assert [r["method"] for r in rows] == [
        "greenladder",
        "FLAML (1x greenladder's time)",
        "FLAML (3x greenladder's time)",
    ]
    assert rows[0]["resumed"] and rows[1]["resumed"] and "resumed" not in rows[2]
    # the new run's group in the file is complete by itself, so a second resume finds every method
    assert [r["method"] for r in common.earlier_rows(writer.jsonl)] == [r["method"] for r in rows]
    # rows measured on another split are not mixed into this one's tables
    other = common.ResultsWriter(name, "cmd", tmp_path)
    other.record("greenladder", {**gl, "data_sha256": "b" * 64})
    with pytest.raises(common.BenchError, match="another split"):
        sm.resumed(args, common.ResultsWriter(name, "cmd", tmp_path))


def test_order_replay_trains_nothing_and_says_where_the_recorded_runs_must_be(tmp_path: Path) -> None:
    replay = _module("order_replay")
    with pytest.raises(replay.BenchError, match="--work"):
        replay.main(["--data", "uncertainty", "--out", str(tmp_path)])
