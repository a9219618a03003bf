"""Training with cached teacher logits: the teacher helps, runs once, and the student compresses."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from types import SimpleNamespace

import pytest
import torch
import yaml
from datasets import Dataset
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast, TrainerCallback

from advisor.config.settings import MeteringConfig
from advisor.metering.cost import Meter
from advisor.types import Cost
from distill.compress import load_int8, model_latency, quantize_int8, save_int8
from distill.config import CompressConfig, DistillConfig, KDConfig, StudentConfig, TeacherTrainConfig
from distill.losses import NO_LABEL
from distill.pipeline import distill_models
from distill.report import model_card, render_markdown, write_reports
from distill.teacher import teacher_outputs
from distill.trainer import evaluate, train_student

OFF = MeteringConfig(enabled=False, codecarbon=False)


POSITIVE = ["great", "superb", "lovely", "excellent", "fine"]
NEGATIVE = ["awful", "poor", "terrible", "bad", "dull"]
FILLER = ["the", "film", "was", "a", "plot", "and", "it", "really", "very", "story", "acting", "quite"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + POSITIVE + NEGATIVE + FILLER
LABELS = ("neg", "pos")


def rows(n: int, seed: int, noise: float = 0.0) -> tuple[list[str], list[int]]:
    """Texts whose label is set by one sentiment word; ``noise`` of the labels are flipped."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = rng.choices(FILLER, k=rng.randint(3, 8))
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
        texts.append(" ".join(words))
        labels.append(1 - label if rng.random() < noise else label)
    return texts, labels


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> BertTokenizerFast:
    folder = tmp_path_factory.mktemp("tok")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return BertTokenizerFast.from_pretrained(str(folder))


def tiny(layers: int, seed: int) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=32,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


def fit(model, tok, texts, labels, settings, *, seed, teacher=None, scratch=None, meter=None):
    """Train through the real stack (DistillTrainer) with metering off unless a meter is given."""
    import tempfile
    from pathlib import Path

    root = Path(scratch) if scratch is not None else Path(tempfile.mkdtemp())
    if meter is not None:
        return train_student(model, tok, texts, labels, settings, seed=seed, scratch_root=root, run_id="t",
                             meter=meter, teacher=teacher)  # fmt: skip
    with Meter(OFF, phase="t") as m:
        return train_student(model, tok, texts, labels, settings, seed=seed, scratch_root=root, run_id="t",
                             meter=m, teacher=teacher)  # fmt: skip


def accuracy(model, tok, texts, labels) -> float:
    return evaluate(model, tok, texts, labels, LABELS, max_length=16)[0]["accuracy"]


FAST = KDConfig(
    epochs=5, learning_rate=3e-3, batch_size=16, max_length=16, warmup_ratio=0.0, alpha=0.1, temperature=2.0
)


@pytest.fixture(scope="module")
def teacher(tok) -> BertForSequenceClassification:
    """A 2-layer teacher trained on clean labels until it is right."""
    model = tiny(layers=2, seed=0)
    fit(
        model,
        tok,
        *rows(192, seed=1),
        KDConfig(epochs=8, learning_rate=3e-3, batch_size=32, max_length=16, warmup_ratio=0.0),
        seed=0,
    )
    return model


def test_teacher_is_good(teacher, tok):
    assert accuracy(teacher, tok, *rows(100, seed=9)) >= 0.95


def test_student_with_teacher_beats_or_matches_the_same_student_without_it(teacher, tok, tmp_path):
    # the student sees few, partly mislabelled examples; the teacher's soft targets carry what the
    # labels get wrong. Same initialisation, data order, steps and seed on both sides.
    texts, labels = rows(32, seed=2, noise=0.3)
    outs = teacher_outputs(teacher, tok, texts, max_length=16, cache_dir=tmp_path)
    val_texts, val_labels = rows(200, seed=9)
    kd_scores, control_scores = [], []
    for seed in (0, 1):
        kd = tiny(layers=1, seed=100 + seed)
        control = tiny(layers=1, seed=100 + seed)
        assert all(torch.equal(a, b) for a, b in zip(kd.parameters(), control.parameters(), strict=True))
        fit(kd, tok, texts, labels, FAST, seed=seed, teacher=outs)
        fit(control, tok, texts, labels, FAST, seed=seed)
        kd_scores.append(accuracy(kd, tok, val_texts, val_labels))
        control_scores.append(accuracy(control, tok, val_texts, val_labels))
    assert sum(kd_scores) >= sum(control_scores), (kd_scores, control_scores)


class CountingForward:
    """Counts forward passes of a module (a fake observer, not a mock)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        module.register_forward_pre_hook(self._hook)

    def _hook(self, *_args) -> None:
        self.calls += 1


def test_cached_logits_mean_the_teacher_runs_once(teacher, tok, tmp_path):
    texts, labels = rows(40, seed=3)
    counter = CountingForward(teacher)
    first = teacher_outputs(teacher, tok, texts, max_length=16, cache_dir=tmp_path)
    ran = counter.calls
    assert not first.cache_hit and ran > 0
    assert first.path.is_file() and first.path.parent.name == "teacher_logits"

    student = tiny(layers=1, seed=5)
    fit(student, tok, texts, labels, KDConfig(epochs=3, batch_size=8, max_length=16), seed=0, teacher=first)
    again = teacher_outputs(teacher, tok, texts, max_length=16, cache_dir=tmp_path)
    assert again.cache_hit and again.key == first.key
    assert counter.calls == ran  # neither the epochs nor the second run re-ran the teacher
    assert torch.equal(again.logits, first.logits)

    other = teacher_outputs(teacher, tok, texts, max_length=8, cache_dir=tmp_path)
    assert not other.cache_hit and other.key != first.key  # max_length is part of the key


def test_cache_key_follows_the_teacher_weights(teacher, tok, tmp_path):
    texts, _ = rows(10, seed=4)
    before = teacher_outputs(teacher, tok, texts, max_length=16, cache_dir=tmp_path)
    changed = tiny(layers=2, seed=0)
    changed.load_state_dict(teacher.state_dict())
    with torch.no_grad():
        changed.classifier.bias.add_(0.5)
    assert teacher_outputs(changed, tok, texts, max_length=16, cache_dir=tmp_path).key != before.key


def test_quantised_student_runs_is_saved_reloads_and_latency_is_measured(teacher, tok, tmp_path):
    texts, labels = rows(60, seed=6)
    q = quantize_int8(teacher)
    assert any(isinstance(m, DynamicQuantizedLinear) for m in q.modules())
    assert not any(type(m) is torch.nn.Linear for m in q.modules())
    metrics, preds = evaluate(q, tok, texts, labels, LABELS, max_length=16)
    assert metrics["accuracy"] >= 0.9  # int8 keeps what the float teacher knew on this easy task
    teacher.config.save_pretrained(tmp_path)
    path = save_int8(q, tmp_path / "student_int8.pt")
    again = load_int8(tmp_path, path)
    assert any(isinstance(m, DynamicQuantizedLinear) for m in again.modules())
    assert evaluate(again, tok, texts, labels, LABELS, max_length=16)[1] == preds  # same predictions, row for row
    lat = model_latency(q, tok, texts, max_length=16, repeats=10)
    assert 0 < lat["latency_ms_p50"] <= lat["latency_ms_p95"]


def _task_data(n_train: int = 48) -> SimpleNamespace:
    def split(n: int, seed: int) -> Dataset:
        t, y = rows(n, seed)
        return Dataset.from_dict({"text": t, "label": y})

    return SimpleNamespace(train=split(n_train, 11), validation=split(40, 12), test=split(40, 13), label_names=LABELS)


def test_whole_distillation_reports_control_retention_speedup_and_phases(tok, tmp_path):
    config = DistillConfig(
        teacher="tiny-teacher",
        student=StudentConfig(layers=1),
        teacher_train=TeacherTrainConfig(epochs=1, learning_rate=3e-3, batch_size=16, max_length=16),
        distill=KDConfig(epochs=1, learning_rate=3e-3, batch_size=16, max_length=16, seeds=[0, 1]),
        compress=CompressConfig(quantize=True, latency_repeats=5),
        metering=MeteringConfig(enabled=False, codecarbon=False),
        out=str(tmp_path / "out"),
    )
    teacher = tiny(layers=2, seed=0)  # fresh head: the pipeline fine-tunes it first
    report, student, student_tok = distill_models(
        teacher, tok, _task_data(), config, work_dir=tmp_path / "out", teacher_needs_finetune=True
    )

    assert [r.run_id for r in report.students] == ["distilled-seed0", "distilled-seed1"]
    assert [r.run_id for r in report.controls] == ["control-seed0", "control-seed1"]
    assert {"teacher", "teacher_logits", "distill", "control", "quantize", "latency"} <= set(report.phases)
    assert report.phases["teacher"].train_flops > 0  # the fine-tune is metered
    assert report.phases["distill"].train_flops > 0 and report.phases["teacher_logits"].eval_flops > 0
    assert report.phases["teacher_logits"].train_flops == 0
    assert report.students[0].candidate.kind == "distilled" and report.students[0].candidate.layers == 1
    # both seeds read the one cached set of teacher logits; no teacher inference inside training
    assert {r.details["teacher_logits_key"] for r in report.students} == {
        report.students[0].details["teacher_logits_key"]
    }
    # the distilled runs' FLOPs are the student's training and evaluation only: no teacher pass inside
    student_flops_per_pass = report.students[0].cost.train_flops
    control_flops_per_pass = report.controls[0].cost.train_flops
    assert student_flops_per_pass == pytest.approx(control_flops_per_pass, rel=0.01)
    assert all(len(r.val_predictions) == 40 for r in (*report.students, *report.controls, report.teacher))
    s = report.summary
    assert s["metric"] == "accuracy" and s["saved_run"] in ("distilled-seed0", "distilled-seed1")
    assert s["retention"] == pytest.approx(s["student_score"] / s["teacher_score"])
    saved = report.delivered
    control = next(r for r in report.controls if r.hyperparameters["seed"] == saved.hyperparameters["seed"])
    gain = s["gain_over_control"]  # paired, on the same validation rows
    assert gain["points"] == pytest.approx(100 * (saved.metrics["accuracy"] - control.metrics["accuracy"]))
    assert gain["low"] <= gain["points"] <= gain["high"] and gain["n"] == 40
    assert set(s["gain_per_seed"]) == {"0", "1"}
    # the test split is not scored here (no score_test): it is for the delivered student, once
    assert all(not r.test_metrics for r in (*report.students, *report.controls, report.teacher, report.quantized))
    assert s["params_student"] < s["params_teacher"]
    assert {"teacher", "student", "student_int8"} == set(report.latency)
    assert "speedup_p50_student" in s and report.quantized is not None

    assert (tmp_path / "out" / "runs" / "distilled-seed0" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "out" / "teacher" / "model.safetensors").is_file()  # the fine-tune is kept
    assert "without the teacher" in model_card(report, LABELS)
    # with emissions metered, the card carries them as the advisor's cards do, for the whole distillation
    metered = Cost(emissions_g=0.25, location="FRA", device="cpu", provenance={"emissions": "estimated"})
    with_emissions = dataclasses.replace(report, phases=dict.fromkeys(report.phases, metered))
    front = yaml.safe_load(model_card(with_emissions, LABELS).split("---")[1])
    assert front["co2_eq_emissions"]["emissions"] == pytest.approx(0.25 * len(report.phases))
    assert front["co2_eq_emissions"]["geographical_location"] == "FRA"
    json_path, md_path = write_reports(report, tmp_path / "out")
    assert json.loads(json_path.read_text())["summary"]["seeds"] == 2
    md = render_markdown(report)
    assert "Retention" in md and "no-teacher control" in md and "control-seed1" in md


def test_onnx_export_gives_the_same_logits(teacher, tok, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from distill.compress import export_onnx

    path = export_onnx(teacher, tok, tmp_path / "student.onnx", max_length=16)
    enc = tok(["great film", "the plot was dull and really very poor"], padding=True, return_tensors="np")
    feeds = {k: enc[k].astype("int64") for k in ("input_ids", "attention_mask")}
    got = ort.InferenceSession(str(path)).run(None, feeds)[0]
    with torch.inference_mode():
        want = teacher.eval()(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
    assert abs(got - want).max() < 1e-4
    from distill.compress import onnx_latency

    lat = onnx_latency(path, tok, ["great film", "dull plot"], max_length=16, repeats=5)
    assert lat is not None and 0 < lat["latency_ms_p50"] <= lat["latency_ms_p95"]


def test_hidden_state_loss_trains_a_narrower_student_through_a_projection(teacher, tok, tmp_path):
    texts, labels = rows(16, seed=7)
    outs = teacher_outputs(teacher, tok, texts, max_length=16, cache_dir=tmp_path, with_pooled=True)
    assert outs.pooled is not None and outs.pooled.shape == (16, 32)
    torch.manual_seed(0)
    narrow = BertForSequenceClassification(
        BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
                   intermediate_size=20, max_position_embeddings=32, num_labels=2)
    )  # fmt: skip
    before = [p.detach().clone() for p in narrow.parameters()]
    settings = KDConfig(epochs=1, batch_size=8, max_length=16, hidden_weight=1.0)
    facts = fit(narrow, tok, texts, labels, settings, seed=0, teacher=outs)
    assert facts["steps"] == 2 and facts["final_loss"] == facts["final_loss"]  # ran, and the loss is not NaN
    assert any(not torch.equal(a, b) for a, b in zip(before, narrow.parameters(), strict=True))


def test_the_control_refuses_unlabelled_rows_and_the_student_learns_from_them(teacher, tok, tmp_path):
    # 8 labelled rows are too few; 120 unlabelled rows carry the teacher's knowledge
    texts, labels = rows(8, seed=20)
    extra, _ = rows(120, seed=21)
    with pytest.raises(ValueError, match="Unlabelled rows need a teacher"):
        fit(tiny(layers=1, seed=3), tok, texts + extra, labels + [NO_LABEL] * len(extra), FAST, seed=0)
    outs = teacher_outputs(teacher, tok, texts + extra, max_length=16, cache_dir=tmp_path)
    student, control = tiny(layers=1, seed=3), tiny(layers=1, seed=3)
    fit(student, tok, texts + extra, labels + [NO_LABEL] * len(extra), FAST, seed=0, teacher=outs)
    fit(control, tok, texts, labels, FAST, seed=0)
    val = rows(200, seed=9)
    with_transfer, without = accuracy(student, tok, *val), accuracy(control, tok, *val)
    assert with_transfer >= 0.9 and with_transfer > without + 0.05, (with_transfer, without)


def test_a_student_learning_from_unlabelled_rows_is_not_judged_by_its_loss_alone():
    from advisor.config.settings import RulesConfig
    from advisor.health.rules import DivergenceRule, LossNotDecreasingRule, NanLossRule
    from distill.trainer import health_rules

    labelled = health_rules(RulesConfig(), False, unlabelled=False)
    mixed = health_rules(RulesConfig(), False, unlabelled=True)
    assert any(isinstance(c, LossNotDecreasingRule) for c in labelled)
    assert not any(isinstance(c, LossNotDecreasingRule) for c in mixed)
    # NaN, and divergence (3x the start and a nat above it: far wider than the mix's swing), stay on
    assert {NanLossRule, DivergenceRule} <= {type(c) for c in mixed}
    assert health_rules(RulesConfig(enabled=False), False, unlabelled=True) == []


def test_a_student_is_trained_by_the_trainer_factory_of_every_rung(tok, tmp_path, monkeypatch):
    """Precision, the evaluation batch and the stop shared by every process come from advisor.training.hf_trainer."""
    import distill.trainer as student_trainer
    from advisor.distributed import StopTogether
    from advisor.training.hf_trainer import EVAL_BATCH
    from distill.trainer import DistillTrainer

    built = []

    def keep(*args, **kwargs):  # the real factory; the Trainer it built is kept for a look
        built.append(build(*args, **kwargs))
        return built[-1]

    build = student_trainer.build_trainer
    monkeypatch.setattr(student_trainer, "build_trainer", keep)
    texts, labels = rows(32, seed=4)
    settings = dataclasses.replace(FAST, epochs=1)
    with Meter(OFF, phase="t") as m:
        facts = train_student(tiny(layers=1, seed=3), tok, texts, labels, settings, seed=0, scratch_root=tmp_path,
                              run_id="t", meter=m, validation=rows(16, seed=5), precision="bf16")  # fmt: skip
    (trainer,) = built
    assert isinstance(trainer, DistillTrainer) and trainer.kd is None  # the no-teacher control: labels alone
    assert trainer.args.bf16 and not trainer.args.fp16  # the precision asked for (bf16 autocasts on a CPU too)
    assert trainer.args.per_device_eval_batch_size == EVAL_BATCH
    assert any(isinstance(cb, StopTogether) for cb in trainer.callback_handler.callbacks)
    assert trainer.args.eval_strategy == "epoch" and not trainer.args.remove_unused_columns
    assert facts["steps"] == facts["total_steps"] == 2 and math.isfinite(facts["final_loss"])


def test_a_student_whose_step_hangs_is_ended_and_the_stall_is_returned_as_its_rule(tok, tmp_path):
    """The stall rule interrupts a hung step; the student comes back with the firing (it used to escape
    train_student as an exception, so a hung student ended the distillation instead of being recorded)."""
    import threading
    import time

    from advisor.config.settings import RulesConfig

    class HangAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                time.sleep(120)  # a step that never comes back, as far as the run is concerned

    texts, labels = rows(64, seed=6)
    began = time.monotonic()
    with Meter(OFF, phase="t") as m:
        facts = train_student(tiny(layers=1, seed=3), tok, texts, labels, FAST, seed=0, scratch_root=tmp_path,
                              run_id="t", meter=m, rules=RulesConfig(stall_seconds=3.0), callbacks=[HangAt()])  # fmt: skip
    assert time.monotonic() - began < 60
    assert facts["rule"]["rule"] == "stall" and facts["rule"]["step"] == 1 and facts["steps"] == 1
    assert not any(t.name == "greenladder-stall-watchdog" for t in threading.enumerate())


class OutOfMemoryAtStep2(TrainerCallback):
    """Raises the error CUDA raises before the second step of the first attempt (after one update)."""

    def __init__(self) -> None:
        self.batches, self.starts, self.at_error = [], [], None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.batches.append((args.per_device_train_batch_size, args.gradient_accumulation_steps))
        self.starts.append([p.detach().clone() for p in model.parameters()])

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if len(self.batches) == 1 and state.global_step == 1:
            self.at_error = [p.detach().clone() for p in model.parameters()]
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_a_student_that_runs_out_of_memory_restarts_from_its_first_weights_at_half_the_batch(tok, tmp_path):
    texts, labels = rows(64, seed=7)
    settings = dataclasses.replace(FAST, epochs=1, batch_size=16)
    oom = OutOfMemoryAtStep2()
    with Meter(OFF, phase="t") as m:
        facts = train_student(tiny(layers=1, seed=3), tok, texts, labels, settings, seed=0, scratch_root=tmp_path,
                              run_id="t", meter=m, callbacks=[oom])  # fmt: skip
    assert oom.batches == [(16, 1), (8, 2)]  # the same effective batch
    assert facts["oom_retries"] == [
        {"batch_size": 16, "accumulation": 1, "error": "CUDA out of memory. Tried to allocate 2.00 GiB"}
    ]
    assert (facts["per_device_batch_size"], facts["gradient_accumulation_steps"]) == (8, 2)
    assert facts["steps"] == facts["total_steps"] == 4
    # one update had changed the weights when memory ran out; the retry started from the first ones
    assert any(not torch.equal(a, b) for a, b in zip(oom.starts[0], oom.at_error, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(oom.starts[0], oom.starts[1], strict=True))
    assert not list(tmp_path.glob(".scratch/trainer-t-*"))


def test_a_student_ends_with_the_weights_of_its_best_evaluation_in_the_metric_it_is_judged_by(tok, tmp_path):
    """As every rung does: each epoch's evaluation is scored, and the best one's weights are delivered."""
    from advisor.training.inference import predict_labels
    from advisor.verdicts.criteria import compute_metrics

    class Scores(TrainerCallback):
        def __init__(self) -> None:
            self.seen: list[tuple[int, float]] = []

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            self.seen.append((state.global_step, metrics["eval_accuracy"]))

    texts, labels = rows(48, seed=7, noise=0.3)  # noisy labels: later epochs need not be the best
    val_texts, val_labels = rows(24, seed=8)
    scores = Scores()
    model = tiny(layers=1, seed=3)
    with Meter(OFF, phase="t") as m:
        facts = train_student(model, tok, texts, labels, FAST, seed=0, scratch_root=tmp_path, run_id="t", meter=m,
                              validation=(val_texts, val_labels), callbacks=[scores], keep_best=("accuracy", ("neg", "pos")))  # fmt: skip
    assert len(scores.seen) == FAST.epochs
    best_step, best = max(scores.seen, key=lambda s: (s[1], s[0]))  # of equal scores, the later is kept (as for rungs)
    assert facts["best_step"] == best_step and facts["best_metric"] == pytest.approx(best)
    delivered = compute_metrics(val_labels, predict_labels(model, tok, val_texts, FAST.max_length), ("neg", "pos"))
    assert delivered["accuracy"] == pytest.approx(best)
