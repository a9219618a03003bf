"""The `distill` command: one-line errors with exit code 2, and a whole run on a tiny teacher."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

from distill.cli import main

POSITIVE = ["great", "superb", "lovely", "excellent", "fine"]
NEGATIVE = ["awful", "poor", "terrible", "bad", "dull"]
FILLER = ["the", "film", "was", "a", "plot", "and", "it", "really", "very", "story", "acting", "quite"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + POSITIVE + NEGATIVE + FILLER + [str(i) for i in range(10)]


@pytest.fixture
def encoder_folder(tmp_path: Path) -> Path:
    """A tiny pre-trained-style encoder without a classification head."""
    folder = tmp_path / "encoder"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    BertTokenizerFast.from_pretrained(str(folder)).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture
def reviews_csv(tmp_path: Path) -> Path:
    rng = random.Random(0)
    path = tmp_path / "reviews.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(120):
            label = "pos" if i % 2 == 0 else "neg"
            words = rng.choices(FILLER, k=rng.randint(3, 7))
            words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
            w.writerow([" ".join(words) + f" {i}", label])
    return path


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "expected an error message"
    assert err[-1].startswith("distill: error:") and "Traceback" not in "".join(err)
    return err[-1]


def test_a_teacher_without_a_head_is_refused_when_finetuning_is_off(encoder_folder, reviews_csv, tmp_path, capsys):
    rc = main(
        [
            "--teacher",
            str(encoder_folder),
            "--data",
            str(reviews_csv),
            "--out",
            str(tmp_path / "o"),
            "--no-finetune-teacher",
        ]
    )
    assert rc == 2
    line = _one_line_error(capsys)
    assert "no classification head" in line and "--no-finetune-teacher" in line


def test_unknown_setting_names_the_close_match(capsys):
    assert main(["--teacher", "x", "--set", "distill.alpah=0.3"]) == 2
    assert "Did you mean distill.alpha?" in _one_line_error(capsys)


def test_bad_alpha_is_refused(capsys):
    assert main(["--teacher", "x", "--alpha", "1.5"]) == 2
    assert "--alpha" in _one_line_error(capsys)


def test_tiny_end_to_end_run_writes_report_and_student(encoder_folder, reviews_csv, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "--teacher", str(encoder_folder), "--data", str(reviews_csv), "--out", str(out),
            "--student-layers", "1", "--epochs", "1", "--lr", "3e-3", "--max-length", "16", "--quantize",
            "--set", "teacher_train.epochs=1", "--set", "compress.latency_repeats=5",
            "--set", "metering.codecarbon=false",
        ]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "distill_report.json").read_text())
    assert report["teacher"]["details"]["fine_tuned_here"] is True
    assert "teacher_finetune" in report["phases"] and "control" in report["phases"]
    for key in ("retention_accuracy", "gain_over_control_accuracy", "speedup_p50_student"):
        assert report["summary"][key] is not None
    assert (out / "distill_report.md").is_file() and (out / "distill_config.yaml").is_file()
    assert (out / "student" / "README.md").is_file() and (out / "student" / "config.json").is_file()
    assert "retention" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.integration
def test_minilm_l6_teacher_to_three_layers_on_bbc_news(tmp_path, capsys):
    """The issue's acceptance run: fine-tune MiniLM-L6 on BBC News, distil to layers 0, 2, 4 (minutes)."""
    out = tmp_path / "bbc"
    rc = main(
        ["--teacher", "minilm-l6", "--data", "bbc-news", "--student-layers", "3", "--quantize", "--out", str(out),
         "--epochs", "2", "--set", "teacher_train.epochs=1"]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    s = json.loads((out / "distill_report.json").read_text())["summary"]
    assert s["retention_accuracy"] > 0.9
    assert s["speedup_p50_student"] > 1.2


def test_a_student_with_another_vocabulary_is_refused_before_any_training(
    encoder_folder, reviews_csv, tmp_path, capsys
):
    other = tmp_path / "other-student"
    other.mkdir()
    (other / "vocab.txt").write_text("\n".join(VOCAB[:-1] + ["movie"]) + "\n", encoding="utf-8")
    BertTokenizerFast.from_pretrained(str(other)).save_pretrained(other)
    config = BertConfig(
        vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37
    )
    BertModel(config).save_pretrained(other, safe_serialization=True)
    out = tmp_path / "o"
    rc = main(
        ["--teacher", str(encoder_folder), "--data", str(reviews_csv), "--student", str(other), "--out", str(out)]
    )
    assert rc == 2
    assert "differs from the teacher's" in _one_line_error(capsys)
    assert not (out / "teacher_logits").exists()  # refused before the teacher was fine-tuned or run


def test_shipped_distill_yaml_loads_and_flags_override_it():
    from advisor.config import CONFIG_DIR
    from distill.config import build_distill_config

    config = build_distill_config([CONFIG_DIR / "distill.yaml"], ["distill.seeds=[0, 1]"], {"teacher": "minilm-l6"})
    assert config.student.layers is None and config.distill.seeds == [0, 1]
    assert config.teacher_train.epochs == 2.0
