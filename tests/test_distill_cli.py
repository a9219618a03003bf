"""The `distill` command: one-line errors with exit code 2, and a whole run on a tiny teacher."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

from advisor.errors import ModelError
from distill.cli import main
from distill.teacher import load_teacher

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


@pytest.fixture
def finetuned_pickle_teacher(encoder_folder: Path, reviews_csv: Path, tmp_path: Path) -> Path:
    """A fine-tuned BertForSequenceClassification saved as pytorch_model.bin only, its head ordered
    [pos, neg] (the data's labels sort as [neg, pos]): what a user brings from plain transformers."""
    from advisor.config.settings import MeteringConfig
    from advisor.metering.cost import Meter
    from distill.config import KDConfig
    from distill.trainer import train_student

    tok = BertTokenizerFast.from_pretrained(str(encoder_folder))
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(
        str(encoder_folder), num_labels=2, id2label={0: "pos", 1: "neg"}, label2id={"pos": 0, "neg": 1}
    )
    with reviews_csv.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    texts, labels = [r["text"] for r in rows], [0 if r["label"] == "pos" else 1 for r in rows]
    settings = KDConfig(alpha=1.0, epochs=6, learning_rate=3e-3, batch_size=16, max_length=16, warmup_ratio=0.0)
    with Meter(MeteringConfig(enabled=False, codecarbon=False)) as m:
        train_student(model, tok, texts, labels, settings, seed=0, scratch_root=tmp_path, run_id="ft", meter=m)
    folder = tmp_path / "finetuned-bin"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    # transformers 5 writes safetensors only; an older checkpoint holds a pickled state dict instead
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    assert (folder / "pytorch_model.bin").is_file() and not list(folder.glob("*.safetensors"))
    return folder


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


@pytest.mark.parametrize("copies", ["-1", "21"])
def test_an_augment_count_out_of_range_is_refused(copies, capsys):
    assert main(["--teacher", "x", "--augment", copies]) == 2
    assert "--augment" in _one_line_error(capsys)


def test_unlabelled_texts_without_the_text_column_are_refused_before_any_training(
    encoder_folder, reviews_csv, tmp_path, capsys
):
    bad = tmp_path / "extra.csv"
    bad.write_text("body\nsome text\n", encoding="utf-8")
    out = tmp_path / "o"
    rc = main(
        ["--teacher", str(encoder_folder), "--data", str(reviews_csv), "--unlabeled", str(bad), "--out", str(out)]
    )
    assert rc == 2
    line = _one_line_error(capsys)
    assert "no column 'text'" in line and "data.text_column" in line
    assert not out.exists()


def test_tiny_end_to_end_run_writes_report_and_student(encoder_folder, reviews_csv, tmp_path, capsys):
    out = tmp_path / "run"
    extra = tmp_path / "unlabelled.txt"
    rng = random.Random(5)
    extra.write_text(
        "\n".join(" ".join(rng.choices(FILLER + POSITIVE + NEGATIVE, k=6)) for _ in range(50)) + "\n", encoding="utf-8"
    )
    rc = main(
        [
            "--teacher", str(encoder_folder), "--data", str(reviews_csv), "--out", str(out), "--unlabeled", str(extra),
            "--student-layers", "1", "--epochs", "1", "--lr", "3e-3", "--max-length", "16", "--quantize", "--augment", "1",
            "--set", "teacher_train.epochs=1", "--set", "compress.latency_repeats=5",
            "--set", "metering.codecarbon=false",
        ]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "distill_report.json").read_text())
    assert report["teacher"]["details"]["fine_tuned_here"] is True
    assert report["phases"]["teacher"]["train_flops"] > 0 and "control" in report["phases"]
    for key in ("retention", "gain_over_control", "speedup_p50_student"):
        assert report["summary"][key] is not None
    assert (out / "distill_report.md").is_file() and (out / "distill_config.yaml").is_file()
    assert (out / "student" / "README.md").is_file() and (out / "student" / "config.json").is_file()
    assert (out / "student" / "student_int8.pt").is_file()
    assert "retention" in capsys.readouterr().out
    # the transfer set trains the distilled student only; the report says the control cannot use it
    # (with --augment 1: one perturbed copy of each labelled text joins it, unless it repeats one)
    augmented = report["summary"]["augmented_rows"]
    assert report["summary"]["unlabeled_rows"] == 50 and 0 < augmented <= 120  # at most one per labelled row
    assert report["students"][0]["details"]["transfer_rows"] == 50 + augmented
    assert report["controls"][0]["details"]["transfer_rows"] == 0
    assert "the no-teacher control cannot use them" in (out / "distill_report.md").read_text()
    assert f"{augmented:,} perturbed copies" in (out / "distill_report.md").read_text()
    check = report["summary"]["teacher_vs_control"]  # decided before the distilled student was trained
    assert check["n"] == len(report["teacher"]["val_predictions"]) and check["low"] <= check["high"]
    assert "Does the teacher add anything?" in (out / "distill_report.md").read_text()


def test_a_finetuned_pickle_only_teacher_is_refused_without_allow_pickle(
    finetuned_pickle_teacher, reviews_csv, tmp_path, capsys
):
    rc = main(["--teacher", str(finetuned_pickle_teacher), "--data", str(reviews_csv), "--out", str(tmp_path / "o")])
    assert rc == 2 and "pickled weights" in _one_line_error(capsys)


def test_existing_finetuned_teacher_labels_by_name_and_a_rerun_finishes_from_the_ledger(
    finetuned_pickle_teacher, reviews_csv, tmp_path, capsys
):
    out = tmp_path / "run"
    argv = [
        "--teacher", str(finetuned_pickle_teacher), "--data", str(reviews_csv), "--out", str(out), "--allow-pickle",
        "--student-layers", "1", "--epochs", "2", "--lr", "3e-3", "--max-length", "16", "--quantize",
        "--set", "compress.latency_repeats=5", "--set", "metering.codecarbon=false",
    ]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    first_err = capsys.readouterr().err
    report = json.loads((out / "distill_report.json").read_text())
    # the head says [pos, neg], the data [neg, pos]: matched by name, the teacher stays right
    assert report["teacher"]["details"]["fine_tuned_here"] is False
    assert report["teacher"]["metrics"]["accuracy"] >= 0.9
    weights = out / "student" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert "distilled-seed0: distilling" in first_err

    assert main(argv) == 0
    second_err = capsys.readouterr().err
    for run_id in ("teacher", "control-seed0", "distilled-seed0", "student-int8"):
        assert f"{run_id}: read back from the ledger" in second_err
    assert "distilled-seed0: distilling" not in second_err and "running the teacher" not in second_err
    assert weights.stat().st_mtime_ns == stamp  # the delivered student is not written again
    again = json.loads((out / "distill_report.json").read_text())
    assert again["summary"]["student_score"] == report["summary"]["student_score"]
    assert again["total_cost"] == report["total_cost"]  # read back, each phase counted once


def _one_layer_bert(folder: Path, **config: object) -> BertConfig:
    """A tokenizer saved in ``folder`` and the config of a one-layer BERT on the test vocabulary."""
    vocab = folder.parent / f"{folder.name}-vocab"
    vocab.mkdir()
    (vocab / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    BertTokenizerFast.from_pretrained(str(vocab)).save_pretrained(folder)
    return BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                      intermediate_size=37, **config)  # fmt: skip


def test_labels_that_do_not_match_by_name_are_an_error_not_a_swap(tmp_path):
    folder = tmp_path / "t"
    config = _one_layer_bert(folder, num_labels=2, id2label={0: "good", 1: "bad"})
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    with pytest.raises(ModelError, match=r"classifies into \['good', 'bad'\].*matched by name"):
        load_teacher(str(folder), ("neg", "pos"))
    # the same names in another order are moved, not swapped: output i is label i of the data
    loaded, tok, needs_finetune = load_teacher(str(folder), ("bad", "good"))
    assert not needs_finetune and loaded.config.id2label == {0: "bad", 1: "good"}
    enc = tok(["great film", "dull plot"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        want = model(**enc).logits
        got = loaded.eval()(**enc).logits
    assert torch.allclose(got, want[:, [1, 0]])


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
    assert s["retention"] > 0.9
    assert s["speedup_p50_student"] > 1.2


def _other_family_student(tmp_path: Path) -> Path:
    """A tiny pre-trained-style encoder with its own vocabulary (other ids, extra words) and width."""
    other = tmp_path / "other-student"
    other.mkdir()
    words = VOCAB[:5] + ["movie", "cinema"] + list(reversed(VOCAB[5:]))
    (other / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    BertTokenizerFast.from_pretrained(str(other)).save_pretrained(other)
    torch.manual_seed(1)
    config = BertConfig(vocab_size=len(words), hidden_size=24, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=30, max_position_embeddings=64)  # fmt: skip
    BertModel(config).save_pretrained(other, safe_serialization=True)
    return other


def test_a_student_of_another_vocabulary_learns_from_the_teachers_logits(
    finetuned_pickle_teacher, reviews_csv, tmp_path, capsys
):
    other = _other_family_student(tmp_path)
    out = tmp_path / "o"
    argv = ["--teacher", str(finetuned_pickle_teacher), "--allow-pickle", "--data", str(reviews_csv),
            "--student", str(other), "--out", str(out), "--epochs", "12", "--lr", "3e-3", "--max-length", "16",
            "--set", "distill.batch_size=8", "--set", "compress.latency_repeats=5",
            "--set", "metering.codecarbon=false", "--no-control"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    report = json.loads((out / "distill_report.json").read_text())
    student = report["students"][0]
    assert student["candidate"]["hidden"] == 24 and student["candidate"]["source"] == str(other)
    saved = BertTokenizerFast.from_pretrained(str(out / "student"))
    assert saved.get_vocab() == BertTokenizerFast.from_pretrained(str(other)).get_vocab()  # its own tokenizer
    assert student["test_metrics"]["accuracy"] >= 0.8, student["test_metrics"]  # the delivered one: scored once


def test_hidden_state_loss_still_refuses_another_vocabulary_before_any_training(
    encoder_folder, reviews_csv, tmp_path, capsys
):
    other = _other_family_student(tmp_path)
    out = tmp_path / "o"
    rc = main(
        ["--teacher", str(encoder_folder), "--data", str(reviews_csv), "--student", str(other), "--out", str(out),
         "--set", "distill.hidden_weight=1"]
    )  # fmt: skip
    assert rc == 2
    assert "differs from the teacher's" in _one_line_error(capsys)
    assert not (out / "teacher_logits").exists()  # refused before the teacher was fine-tuned or run


def test_shipped_distill_yaml_loads_and_flags_override_it():
    from advisor.config.settings import CONFIG_DIR
    from distill.config import build_distill_config

    config = build_distill_config([CONFIG_DIR / "distill.yaml"], ["distill.seeds=[0, 1]"], {"teacher": "minilm-l6"})
    assert config.student.layers is None and config.distill.seeds == [0, 1]
    assert config.teacher_train.epochs == 2.0


def test_a_new_teacher_head_is_drawn_from_the_seed_not_from_the_process(tmp_path):
    # a pre-trained checkpoint without a classification head: load_teacher makes one, and the teacher
    # fine-tuned from it is reproducible only if that head is the same on every run of the command
    folder = tmp_path / "encoder"
    BertModel(_one_layer_bert(folder)).save_pretrained(folder, safe_serialization=True)

    def head(seed: int) -> torch.Tensor:
        torch.rand(7)  # whatever ran before in the process moved the generator
        model, _, needs_finetune = load_teacher(str(folder), ("neg", "pos"), seed=seed)
        assert needs_finetune
        return model.classifier.weight.detach().clone()

    first = head(0)
    assert torch.equal(first, head(0))
    assert not torch.equal(first, head(1))


def test_a_student_precision_that_does_not_exist_is_refused(capsys):
    assert main(["--teacher", "x", "--set", "distill.precision=fp8"]) == 2
    assert "distill.precision" in _one_line_error(capsys)


def test_the_students_precision_reaches_their_trainer(monkeypatch, tmp_path):
    from types import SimpleNamespace

    import distill.training
    from distill.config import KDConfig

    seen = {}
    monkeypatch.setattr(distill.training, "train_student", lambda *a, **kw: seen.update(kw) or {})
    criteria = SimpleNamespace(metric="macro_f1")
    job = SimpleNamespace(
        config=SimpleNamespace(rules=None, criteria=criteria),
        data=SimpleNamespace(label_names=["a", "b"]),
        work_dir=tmp_path,
        say=print,
    )
    distill.training.Job.train(job, None, None, (["a"], [0]), KDConfig(precision="fp32"), seed=0)
    assert seen["precision"] == "fp32"
    # and students keep the weights of their best evaluation, judged in the distillation's metric
    assert seen["keep_best"] == ("macro_f1", ("a", "b"))
