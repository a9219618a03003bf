"""train_run end to end on a tiny BERT: the judged weights, out-of-memory retries, a hung step."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback

import advisor.training.train as train_mod
from advisor.config.settings import Config, build_config
from advisor.data.task import TaskData, column, load_task_data
from advisor.runkey import RunKey
from advisor.training.inference import predict_labels
from advisor.training.train import scratch_dir, train_run
from advisor.types import Candidate
from advisor.verdicts.criteria import compute_metrics
from tests.conftest import make_tiny_model, synthetic_rows, write_csv


@pytest.fixture
def task(tmp_path: Path) -> tuple[Path, TaskData]:
    model = make_tiny_model(tmp_path / "tiny", layers=1)
    csv = write_csv(tmp_path / "data.csv", synthetic_rows(400))
    return model, load_task_data(build_config(overrides=[f"data.source={csv}"]).data)


def _config(tmp_path: Path, *extra: str) -> Config:
    return build_config(
        overrides=[
            "train.epochs=3",
            "train.batch_size=16",
            "train.learning_rate=3e-3",
            "metering.codecarbon=false",
            f"output.out={tmp_path / 'run'}",
            *extra,
        ]
    )


def _run(model: Path, data: TaskData, config: Config, tmp_path: Path, **kw):  # type: ignore[no-untyped-def]
    candidate = Candidate(name="tiny", kind="finetune", source=str(model))
    return train_run(candidate, str(model), data, config, tmp_path / "run", RunKey("trial", "tiny", 1), **kw)


def test_the_saved_model_is_the_judged_one_and_its_predictions_are_the_reported_ones(
    tmp_path: Path, task: tuple[Path, TaskData], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, data = task
    config = _config(tmp_path, "train.evals_per_epoch=2", "rules.enabled=false", "train.eval_rows=0")
    run = _run(model, data, config, tmp_path)
    assert run.status == "ok", run.message
    history = run.evaluations
    assert len(history) == 6  # 2 per epoch; the last at the last step
    assert len({h.value for h in history}) > 1 and 0 < sum(run.val_predictions) < len(run.val_predictions)
    best = max(reversed(history), key=lambda h: h.value or 0.0)  # the last of equals, as BestWeights keeps
    assert run.details["best_step"] == best.step and run.metrics["accuracy"] == best.value
    assert run.to_dict()["details"]["eval_history"][0] == {"step": history[0].step, "accuracy": history[0].value,
                                                           "eval_loss": history[0].loss}  # report.json as before  # fmt: skip
    # the predictions are those of the saved (best) weights, row for row, and the metrics come from them
    folder = tmp_path / "run" / str(run.artifact)
    saved = AutoModelForSequenceClassification.from_pretrained(folder)
    texts = column(data.validation, "text")
    again = predict_labels(saved, AutoTokenizer.from_pretrained(folder), texts, 128)
    assert list(again) == list(run.val_predictions) and len(again) == len(texts)
    labels = np.asarray(column(data.validation, "label"))
    assert compute_metrics(labels, np.asarray(run.val_predictions), data.label_names) == pytest.approx(run.metrics)


def test_validation_is_not_run_again_after_training_when_each_evaluation_scores_it_all(
    tmp_path: Path, task: tuple[Path, TaskData], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, data = task

    def second_pass(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a validation pass after training")

    monkeypatch.setattr(train_mod, "predict_labels", second_pass)
    run = _run(model, data, _config(tmp_path, "train.epochs=1", "train.eval_rows=0"), tmp_path, save_model=False)
    assert run.status == "ok" and run.val_predictions and len(run.evaluations) == 1
    assert run.cost.eval_flops > 0


def test_evaluations_on_a_sample_then_the_kept_weights_judged_on_the_whole_split(
    tmp_path: Path, task: tuple[Path, TaskData]
) -> None:
    model, data = task
    n = len(data.validation)
    assert n > 40
    full = _run(
        model,
        data,
        _config(tmp_path / "a", "train.eval_rows=0", "rules.enabled=false"),
        tmp_path / "a",
    )
    sampled = _run(model, data, _config(tmp_path / "b", "train.eval_rows=20", "rules.enabled=false"), tmp_path / "b")
    assert sampled.status == "ok" and sampled.details["eval_rows"] == 20
    assert len(sampled.evaluations) == 3
    # the judged figures are the kept weights' on every validation row, not the 20-row sample's
    assert len(sampled.val_predictions) == n
    labels = np.asarray(column(data.validation, "label"))
    assert compute_metrics(labels, np.asarray(sampled.val_predictions), data.label_names) == pytest.approx(
        sampled.metrics
    )
    folder = tmp_path / "b" / "run" / str(sampled.artifact)
    again = predict_labels(
        AutoModelForSequenceClassification.from_pretrained(folder),
        AutoTokenizer.from_pretrained(folder),
        column(data.validation, "text"),
        128,
    )
    assert list(again) == list(sampled.val_predictions)
    # 3 evaluations of 20 rows and one of n cost less than 3 of n (same training, same tokens per row;
    # both runs are saved, so both count the 33 single-row latency passes as evaluation too)
    assert sampled.cost.eval_flops < full.cost.eval_flops * (3 * 20 + n + 33) / (3 * n + 33) * 1.3
    assert sampled.cost.eval_flops < full.cost.eval_flops


class OutOfMemoryOnce(TrainerCallback):
    """Raises the error CUDA raises, at the first step of the first attempt only."""

    def __init__(self, error: BaseException) -> None:
        self.error, self.batches = error, []

    def on_step_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self.batches.append((args.per_device_train_batch_size, args.gradient_accumulation_steps))
        if len(self.batches) == 1:
            raise self.error


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB"),
        MemoryError(),
    ],
    ids=["cuda", "cpu-allocator", "host"],
)
def test_out_of_memory_retries_the_trial_at_half_the_batch_with_the_same_effective_batch(
    tmp_path: Path, task: tuple[Path, TaskData], error: BaseException
) -> None:
    model, data = task
    fake = OutOfMemoryOnce(error)
    run = _run(model, data, _config(tmp_path, "train.epochs=1"), tmp_path, extra_callbacks=[fake], save_model=False)
    assert run.status == "ok", run.message
    assert fake.batches[0] == (16, 1) and set(fake.batches[1:]) == {(8, 2)}
    (retry,) = run.details["oom_retries"]
    assert retry["batch_size"] == 16 and retry["accumulation"] == 1
    assert (run.details["per_device_batch_size"], run.details["gradient_accumulation_steps"]) == (8, 2)
    assert run.details["steps"] == run.details["total_steps"]  # same optimizer steps as at batch 16
    assert run.hyperparameters["batch_size"] == 16


def test_an_error_that_is_not_out_of_memory_fails_the_run_without_a_retry(
    tmp_path: Path, task: tuple[Path, TaskData]
) -> None:
    model, data = task
    fake = OutOfMemoryOnce(RuntimeError("shape mismatch"))
    run = _run(model, data, _config(tmp_path, "train.epochs=1"), tmp_path, extra_callbacks=[fake], save_model=False)
    assert run.status == "failed" and "shape mismatch" in str(run.message)
    assert len(fake.batches) == 1 and "oom_retries" not in run.details


class HangAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if state.global_step == self.step:
            time.sleep(120)  # a step that never comes back, as far as the run is concerned


def test_a_hung_step_is_ended_and_recorded_as_stopped(tmp_path: Path, task: tuple[Path, TaskData]) -> None:
    model, data = task
    config = _config(tmp_path, "rules.stall_seconds=3.0")  # 3 s: a loaded machine can take 1 s per tiny step
    began = time.monotonic()
    run = _run(model, data, config, tmp_path, extra_callbacks=[HangAt(3)])
    assert time.monotonic() - began < 60
    assert run.status == "stopped" and str(run.message).startswith("stopped by rule stall at step 3")
    assert run.details["rule"]["numbers"]["idle_seconds"] > 3.0
    assert not any(t.name == "greenladder-stall-watchdog" for t in threading.enumerate())
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_trainer_scratch_lives_in_the_run_dir_and_a_killed_runs_leftover_is_removed(tmp_path: Path) -> None:
    leftover = tmp_path / ".scratch" / "trainer-minilm-l3-t1-abc123"
    leftover.mkdir(parents=True)
    (leftover / "partial.bin").write_bytes(b"x")
    other = tmp_path / ".scratch" / "trainer-minilm-l6-t1-def456"  # another run's: left alone
    other.mkdir()
    fresh = scratch_dir(tmp_path, "minilm-l3-t1")
    assert fresh.parent == tmp_path / ".scratch" and fresh.is_dir()
    assert not leftover.exists() and other.exists()
