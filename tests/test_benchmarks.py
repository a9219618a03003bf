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
