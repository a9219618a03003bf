"""A `distill` output folder matches its data, holds each model once, and says so when asked to resume wrongly."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from distill.cli import main
from tests.conftest import make_tiny_model, synthetic_rows, write_csv

REPO = Path(__file__).resolve().parent.parent
FAST = ["--student-layers", "1", "--epochs", "1", "--lr", "3e-3", "--max-length", "16",
        "--set", "teacher_train.epochs=1", "--set", "compress.latency_repeats=3",
        "--set", "metering.codecarbon=false", "--set", "rules.enabled=false"]  # fmt: skip
MODEL_FILES = (".safetensors", ".pt", ".bin", ".onnx")


def _argv(teacher: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["--teacher", str(teacher), "--data", str(data), "--out", str(out), *FAST, *extra]


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("distill: error:") and "Traceback" not in "".join(err)
    return err[-1]


def _models(out: Path) -> dict[str, str]:
    """Every weights file under ``out`` but the teacher-logit cache: relative path -> SHA-256."""
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.suffix in MODEL_FILES and "teacher_logits" not in p.parts
    }


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("teacher") / "encoder", layers=2)


@pytest.fixture(scope="module")
def finished_csv(teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One finished distillation of a CSV file (with --quantize): its data file and output folder."""
    root = tmp_path_factory.mktemp("csv")
    data = write_csv(root / "reviews.csv", synthetic_rows(120))
    out = root / "run"
    assert main(_argv(teacher, data, out, "--quantize")) == 0
    return data, out


def test_a_distill_folder_holds_each_model_once_and_says_what_it_freed(finished_csv):
    _, out = finished_csv
    models = _models(out)
    assert set(models) == {"student/model.safetensors", "student/student_int8.pt", "teacher/model.safetensors"}
    assert len(set(models.values())) == len(models)  # no model twice, under any name
    assert not (out / "runs").exists() and not (out / "inprogress").exists()  # nothing left half-empty
    report = json.loads((out / "distill_report.json").read_text())
    folder = report["summary"]["folder"]
    assert folder["deleted"] == ["runs/control-seed0/model"] and folder["freed_mb"] > 0
    assert "freed" in (out / "distill_report.md").read_text()
    # the student in student/ is the one the report names, with the int8 form beside it
    assert report["saved_run"] == "distilled-seed0" and (out / "student" / "README.md").is_file()
    # the test split was scored once: for the delivered student and its int8 form, for no other model
    assert report["students"][0]["test_metrics"] and report["quantized"]["test_metrics"]
    assert not report["teacher"]["test_metrics"] and not report["controls"][0]["test_metrics"]


def test_labels_changed_in_place_are_a_one_line_error_naming_them_not_a_read_back(
    finished_csv, teacher, tmp_path, capsys
):
    data, finished = finished_csv
    out, edited = tmp_path / "run", tmp_path / "reviews.csv"
    shutil.copytree(finished, out)
    shutil.copyfile(data, edited)
    capsys.readouterr()
    assert main(_argv(teacher, edited, out, "--quantize")) == 0  # the same content elsewhere: read back
    assert "distilled-seed0: read back from the ledger" in capsys.readouterr().err
    rng = random.Random(3)  # then, in place: the same rows, every label drawn anew
    write_csv(edited, [(text, rng.choice(["pos", "neg"])) for text, _ in synthetic_rows(120)])
    before = (out / "ledger.sqlite").read_bytes()

    assert main(_argv(teacher, edited, out, "--quantize")) == 2
    line = _one_line_error(capsys)
    assert "the data's labels changed" in line and "--out" in line and "--restart" in line
    assert (out / "ledger.sqlite").read_bytes() == before  # nothing read back, nothing overwritten

    # --restart moves the old folder aside (nothing deleted) and distils the edited file afresh; a
    # ceiling no student meets gives the verdict FAIL and exit code 1 (the student is still delivered)
    assert main(_argv(teacher, edited, out, "--quantize", "--restart", "--max-size-mb", "0.001")) == 1
    captured = capsys.readouterr()
    assert "verdict: student: FAIL" in captured.out and "> 0.001 MB" in captured.out
    err = captured.err
    assert f"moved the earlier output folder aside to {out}.old-1" in err and "read back from the ledger" not in err
    assert (Path(f"{out}.old-1") / "ledger.sqlite").read_bytes() == before
    assert json.loads((out / "distill_report.json").read_text())["saved_run"]


def _save_splits(path: Path, rows: list[tuple[str, str]], order: random.Random | None = None) -> Path:
    """A save_to_disk folder with its own train/validation/test splits (shuffled by ``order``)."""
    splits = {"train": rows[:80], "validation": rows[80:100], "test": rows[100:]}
    if order is not None:
        splits = {name: order.sample(r, len(r)) for name, r in splits.items()}
    if path.exists():
        shutil.rmtree(path)
    datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict({"text": [t for t, _ in r], "label": [y for _, y in r]})
            for name, r in splits.items()
        }  # fmt: skip
    ).save_to_disk(str(path))
    return path


def test_reordered_rows_are_read_back_and_the_controls_are_kept_when_asked(teacher, tmp_path, capsys):
    rows = synthetic_rows(120, seed=4)
    data = _save_splits(tmp_path / "splits", rows)
    out = tmp_path / "run"
    assert main(_argv(teacher, data, out, "--keep-control")) == 0
    first = json.loads((out / "distill_report.json").read_text())
    models = _models(out)
    assert "runs/control-seed0/model/model.safetensors" in models and "student/model.safetensors" in models
    assert len(set(models.values())) == len(models) and first["summary"]["folder"]["deleted"] == []

    _save_splits(data, rows, random.Random(7))  # the same rows, each split in another order
    capsys.readouterr()
    assert main(_argv(teacher, data, out, "--keep-control")) == 0
    err = capsys.readouterr().err
    for run_id in ("teacher", "control-seed0", "distilled-seed0"):
        assert f"{run_id}: read back from the ledger" in err
    again = json.loads((out / "distill_report.json").read_text())
    assert again["summary"]["student_score"] == first["summary"]["student_score"]
    assert again["total_cost"] == first["total_cost"]


def test_an_unknown_teacher_name_suggests_what_distill_takes(tmp_path, capsys):
    data = write_csv(tmp_path / "reviews.csv", synthetic_rows(60))
    assert main(["--teacher", "no-such-folder", "--data", str(data), "--out", str(tmp_path / "o")]) == 2
    line = _one_line_error(capsys)
    assert (
        "--ladder" not in line and "offline rung name (" in line and "minilm-l6" in line and "save_pretrained" in line
    )


def test_a_missing_data_file_is_refused_before_torch_loads(tmp_path):
    code = (
        "import sys\nfrom distill.cli import main\n"
        f"rc = main(['--teacher', 'minilm-l6', '--data', {str(tmp_path / 'nope.csv')!r}])\n"
        "print(rc, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert "nope.csv: no such file or folder (--data)" in done.stderr
