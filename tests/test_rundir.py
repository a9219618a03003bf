"""A run directory's records are reused only for the data, models and settings they were made with.

Each case reruns `advise` into a copy of a finished run directory (the baseline passes, so a run
takes seconds) after changing one thing, and checks the rerun either reads the records back or
stops before training with one line that names what changed; ``--restart`` moves the records aside.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from advisor.cli import main
from advisor.config.settings import build_config
from advisor.data.task import load_task_data
from advisor.store import rundir
from tests.conftest import make_tiny_model, synthetic_rows, tiny_rung, write_csv, write_ladder

ROWS = synthetic_rows(120)
HINT = "Pass a new --out, or add --restart to move its records aside and start afresh."


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(data file, ladder, a run directory holding a finished run on them)."""
    root = tmp_path_factory.mktemp("rundir")
    model = make_tiny_model(root / "tiny", layers=1)
    ladder = write_ladder(root / "ladder.yaml", [tiny_rung(model, "tiny")])
    data = write_csv(root / "data.csv", ROWS)
    out = root / "run"
    assert main(_argv(data, ladder, out)) == 0
    return data, ladder, out


def _argv(data: Path, ladder: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--data",
        str(data),
        "--ladder",
        str(ladder),
        "--target",
        "accuracy=0.7",  # the baseline's cross-validated interval clears it: no transformer is trained
        "--out",
        str(out),
        "--set",
        "metering.codecarbon=false",
        *extra,
    ]


def _copy(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def _records(run: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(f"file:{run / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT run_id, record FROM runs ORDER BY run_id").fetchall()
    finally:
        db.close()


def _refused(argv: list[str], run: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run, expect a one-line refusal that changed nothing in ``run``; return the line."""
    before = (_records(run), (run / "report.json").read_bytes())
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line.removeprefix("advise: error: ") for line in err.splitlines() if line.startswith("advise: error: ")]
    assert len(lines) == 1, err[-2000:]
    assert "fitting TF-IDF" not in err and "read back" not in err  # stopped before any work
    assert (_records(run), (run / "report.json").read_bytes()) == before
    return lines[0]


def _reused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "baseline: read back from the ledger (not refitted)" in err
    assert "fitting TF-IDF" not in err


def test_the_same_file_with_changed_labels_is_refused_naming_the_labels(
    finished: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, ladder, run = finished
    out = _copy(run, tmp_path)
    rng = random.Random(3)
    data = write_csv(tmp_path / "data.csv", [(t, rng.choice(["pos", "neg"])) for t, _ in ROWS])  # same rows, new labels
    line = _refused(_argv(data, ladder, out), out, capsys)
    assert line == f"{out} holds runs made with other data (the labels differ (the texts are the same)). {HINT}"


def test_changed_text_is_refused_naming_the_texts(
    finished: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, ladder, run = finished
    out = _copy(run, tmp_path)
    rows = [*ROWS]
    rows[7] = (rows[7][0] + " edited", rows[7][1])
    line = _refused(_argv(write_csv(tmp_path / "data.csv", rows), ladder, out), out, capsys)
    assert line == f"{out} holds runs made with other data (the texts differ (120 rows then, 120 now)). {HINT}"


def test_reordered_rows_or_a_moved_file_with_the_same_content_are_reused(
    finished: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, ladder, run = finished
    out = _copy(run, tmp_path)
    shuffled = [*ROWS]
    random.Random(5).shuffle(shuffled)
    _reused(_argv(write_csv(tmp_path / "elsewhere.csv", shuffled), ladder, out), capsys)
    # and the criteria are not part of the fingerprint: the verdicts are recomputed from the records
    _reused([*_argv(write_csv(tmp_path / "again.csv", ROWS), ladder, out), "--target", "accuracy=0.6"], capsys)


def test_reordered_rows_give_the_same_splits_in_the_same_order(tmp_path: Path) -> None:
    shuffled = [*ROWS]
    random.Random(9).shuffle(shuffled)
    loaded = [
        load_task_data(build_config(overrides=[f"data.source={write_csv(tmp_path / f'{i}.csv', rows)}"]).data)
        for i, rows in enumerate((ROWS, shuffled))
    ]
    for name in ("train", "validation", "test"):
        a, b = (d.splits()[name] for d in loaded)
        assert a["text"] == b["text"] and a["label"] == b["label"], name
    assert rundir.data_digest(loaded[0]) == rundir.data_digest(loaded[1])


def test_changed_ladder_weights_are_refused_naming_the_rung(
    finished: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = finished[0]
    model = make_tiny_model(tmp_path / "tiny", layers=1)
    ladder = write_ladder(tmp_path / "ladder.yaml", [tiny_rung(model, "tiny")])
    out = tmp_path / "run"
    assert main(_argv(data, ladder, out)) == 0
    make_tiny_model(model, layers=1, seed=7)  # the same folder re-saved: same name and shape, other weights
    line = _refused(_argv(data, ladder, out), out, capsys)
    assert line == f"{out} holds runs made with other ladder (rung tiny's weights). {HINT}"
    other = make_tiny_model(tmp_path / "other", layers=1)
    moved = write_ladder(tmp_path / "moved.yaml", [tiny_rung(other, "tiny")])
    line = _refused(_argv(data, moved, out), out, capsys)
    assert line == f"{out} holds runs made with other ladder (rung tiny's source ({model} then, {other} now)). {HINT}"


def test_a_changed_training_setting_is_refused_naming_it(
    finished: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, ladder, run = finished
    out = _copy(run, tmp_path)
    line = _refused(_argv(data, ladder, out, "--set", "train.learning_rate=3e-4"), out, capsys)
    assert line == f"{out} holds runs made with other settings (train.learning_rate (0.0001 then, 0.0003 now)). {HINT}"
    line = _refused(_argv(data, ladder, out, "--set", "data.split_seed=1"), out, capsys)
    assert line == (
        f"{out} holds runs made with other data (the same rows fall into other splits (train, validation, test): "
        f"a split setting changed). {HINT}"
    )


def test_a_run_directory_of_the_previous_fingerprint_format_gets_its_own_message(
    finished: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, ladder, run = finished
    out = _copy(run, tmp_path)
    db = sqlite3.connect(out / "ledger.sqlite")
    db.execute("UPDATE meta SET value = ? WHERE key = 'fingerprint'", (json.dumps("0123456789abcdef"),))
    db.commit()
    db.close()
    line = _refused(_argv(data, ladder, out), out, capsys)
    assert line == (
        f"{out} was written by an earlier version of greenladder, whose records cannot be checked against the "
        f"content of the data and models. {HINT}"
    )


def test_restart_moves_the_records_aside_and_starts_afresh(
    finished: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, ladder, run = finished
    out = _copy(run, tmp_path)
    (out / "notes.txt").write_text("mine")  # not advise's: stays where it is
    old = {p.relative_to(out): hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()}
    flipped = write_csv(tmp_path / "flipped.csv", [(t, "neg" if y == "pos" else "pos") for t, y in ROWS])
    capsys.readouterr()
    assert main([*_argv(flipped, ladder, out), "--restart"]) == 0
    err = capsys.readouterr().err
    (aside,) = tmp_path.glob("run.old-*")
    assert f"--restart: the earlier records of {out} were moved to {aside}" in err
    assert "fitting TF-IDF" in err and "read back" not in err  # a fresh start
    moved = {p.relative_to(aside): hashlib.sha256(p.read_bytes()).hexdigest() for p in aside.rglob("*") if p.is_file()}
    assert moved == {k: v for k, v in old.items() if str(k) not in ("notes.txt", ".advise.lock")}  # nothing lost
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "report.json").read_text())["dataset"]["splits"]
    # and the new records are now the directory's: the same command reuses them
    _reused(_argv(flipped, ladder, out), capsys)


def test_mismatch_lists_at_most_three_settings_and_ignores_keys_only_one_side_has() -> None:
    then = {"version": rundir.VERSION, "data": {}, "ladder": {}, "settings": {"a": 1, "b": 2, "c": 3, "d": 4, "old": 0}}
    then["data"] = now_data = {"all": {"rows": 1, "texts": "x", "labelled": "y"}, "label_names": ["a", "b"]}
    now = {"data": now_data, "ladder": {}, "settings": {"a": 5, "b": 6, "c": 7, "d": 8, "new": 1}}
    assert rundir.mismatch(then, now) == "settings (a (1 then, 5 now); b (2 then, 6 now); c (3 then, 7 now); 1 more)"
    assert rundir.mismatch(None, now) is None
    assert rundir.mismatch({**then, "settings": {**now["settings"], "old": 0}}, now) is None
