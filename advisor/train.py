"""Fine-tune one candidate with one set of hyperparameters and return a metered RunResult.

This is the only place a transformer is trained for the advisor. It uses the Hugging Face
``Trainer`` (under ``accelerate launch`` the ranks train in lockstep: see advisor.distributed), with dynamic
padding and length-bucketed batches (padding is compute spent on nothing), training-health rules
and metering as Trainer callbacks, and optional callbacks from the tuner (pruning).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from advisor import devices, distributed
from advisor.baseline import latency_ms
from advisor.batching import BucketTrainer
from advisor.config import Config
from advisor.cost import Meter, MeteringCallback
from advisor.criteria import compute_metrics
from advisor.data import TaskData, column
from advisor.errors import GreenladderError
from advisor.ledger import fault_point
from advisor.models import count_parameters, load_for_classification
from advisor.rules import first_firing, health_callbacks, steps_saved
from advisor.types import Candidate, RunResult

#: hyperparameters a trial may set; anything else is a programming error
HPARAM_KEYS = ("learning_rate", "epochs", "batch_size", "warmup_ratio", "weight_decay")


class _QuietProgress(ProgressCallback):
    """A progress bar that does not print every log dict (we log each step for the health rules)."""

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        return None

    def on_prediction_step(
        self, args: Any, state: Any, control: Any, eval_dataloader: Any = None, **kwargs: Any
    ) -> None:
        return None  # no nested bar for each mid-training evaluation


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Hide transformers' load reports (a new head is expected here) and datasets' map bars, then restore."""
    import datasets
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = datasets.is_progress_bar_enabled()
    hf_bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights" / "Writing model shards"
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if hf_bars:
            hf_logging.enable_progress_bar()
        if bars:
            datasets.enable_progress_bars()


def resolve_hparams(config: Config, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Fill unset hyperparameters from ``config.train``; unknown names are an error."""
    unknown = set(hparams) - set(HPARAM_KEYS)
    if unknown:
        raise ValueError(f"unknown hyperparameters {sorted(unknown)}; known: {HPARAM_KEYS}")
    t = config.train
    defaults = {
        "learning_rate": t.learning_rate,
        "epochs": t.epochs,
        "batch_size": t.batch_size,
        "warmup_ratio": t.warmup_ratio,
        "weight_decay": t.weight_decay,
    }
    return {k: hparams[k] if hparams.get(k) is not None else defaults[k] for k in HPARAM_KEYS}


def subsample(dataset: Any, fraction: float, seed: int) -> Any:
    """A stratified-enough random subset: shuffle with the seed and keep the first fraction."""
    if fraction >= 1.0:
        return dataset
    n = max(2, int(round(len(dataset) * fraction)))
    return dataset.shuffle(seed=seed).select(range(n))


def tokenize(dataset: Any, tokenizer: PreTrainedTokenizerBase, max_length: int) -> Any:
    """Tokenise without padding (the collator pads each batch to its own longest text)."""

    def enc(batch: dict[str, list[Any]]) -> dict[str, Any]:
        out = tokenizer(batch["text"], truncation=True, max_length=min(max_length, tokenizer.model_max_length))
        out["length"] = [len(ids) for ids in out["input_ids"]]
        return out

    return dataset.map(enc, batched=True, remove_columns=["text"], desc=None)


def predict_labels(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    batch_size: int = 64,
) -> np.ndarray:
    """Predicted label ids for ``texts``, batched and padded per batch, in ``inference_mode``."""
    model.eval()
    device = next(model.parameters()).device
    preds: list[np.ndarray] = []
    order = np.argsort([len(t) for t in texts])  # similar lengths together: less padding
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [texts[i] for i in idx],
                truncation=True,
                max_length=min(max_length, tokenizer.model_max_length),
                padding=True,
                return_tensors="pt",
            )
            logits = model(**{k: v.to(device) for k, v in enc.items()}).logits
            preds.append(logits.argmax(-1).cpu().numpy())
    flat = np.concatenate(preds) if preds else np.zeros(0, dtype=int)
    out = np.empty_like(flat)
    out[order] = flat
    return out


#: a loss plateau counts as convergence when the loss has fallen at least this much since the start
CONVERGED_FALL = 0.10


def _loss_fell(log_history: Sequence[Mapping[str, Any]], firing: Any, window: int) -> str | None:
    """Why a rule's stop is early stopping of a run that learned (keep its model), or None.

    Overfitting and a loss that levelled off after falling are where further steps buy nothing;
    NaN, vanishing gradients, stalls and a loss that never fell are hopeless runs (return None).
    """
    if firing.rule == "overfit":
        # early stopping in the usual sense: the model learned, and more steps would make it worse
        return "validation loss started rising while training loss fell"
    if firing.rule != "loss_not_decreasing":
        return None
    losses = [float(h["loss"]) for h in log_history if "loss" in h and math.isfinite(float(h["loss"]))]
    recent = firing.numbers.get("recent_loss")
    if len(losses) < window or recent is None:
        return None
    start = sum(losses[:window]) / window
    if recent <= (1.0 - CONVERGED_FALL) * start:
        return f"mean loss fell from {start:.4g} (first {window} steps) to {recent:.4g}"
    return None


def dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def scratch_dir(run_dir: Path, run_id: str) -> Path:
    """A fresh folder for the Trainer's own output, under ``<run_dir>/.scratch``.

    Removed when the run ends; one left behind by a killed run of the same id is removed here,
    so nothing piles up in the system's temporary folder.
    """
    root = Path(run_dir) / ".scratch"
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f"trainer-{run_id}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"trainer-{run_id}-", dir=root))


def train_run(
    candidate: Candidate,
    model_source: str,
    data: TaskData,
    config: Config,
    run_dir: Path,
    run_id: str,
    hparams: Mapping[str, Any] | None = None,
    *,
    train_fraction: float = 1.0,
    save_model: bool = True,
    extra_callbacks: Sequence[TrainerCallback] = (),
    progress: Callable[[str], None] | None = None,
) -> RunResult:
    """Fine-tune ``model_source`` on ``data.train`` and judge it on ``data.validation``.

    Args:
        candidate: what is being trained (recorded in the result).
        model_source: a local transformers folder (or a hub id when online).
        data: the task's splits; the test split is not touched here.
        config: resolved configuration (train, rules, metering sections are used).
        run_dir: the advisor's run directory; the model is saved under ``runs/<run_id>/model``.
        run_id: unique id of this run in the ledger.
        hparams: overrides of ``config.train`` (learning_rate, epochs, batch_size, warmup_ratio, weight_decay).
        train_fraction: train on this share of the training split (small experiments first).
        save_model: save the fine-tuned model (off for trials that only inform the search).
        extra_callbacks: more Trainer callbacks (the tuner's pruning callback).

    Returns:
        A RunResult: ``ok`` with validation metrics, ``stopped`` when a health rule or the pruner
        stopped it, ``failed`` when training raised.
    """
    say = progress or (lambda _m: None)
    hp = resolve_hparams(config, hparams or {})
    t = config.train
    set_seed(t.seed)
    with quiet_libraries():
        model, tokenizer = load_for_classification(
            model_source, data.label_names, allow_pickle=t.allow_pickle, trust_remote_code=t.trust_remote_code
        )
        train_ds = tokenize(subsample(data.train, train_fraction, t.seed), tokenizer, t.max_length)
        val_ds = tokenize(data.validation, tokenizer, t.max_length)
    if t.freeze_embeddings:
        model.get_input_embeddings().requires_grad_(False)
    total_params, non_emb = count_parameters(model)
    on_gpu = torch.cuda.is_available()
    precision = devices.resolve_precision(t.precision, on_gpu, on_gpu and torch.cuda.is_bf16_supported())
    steps_per_epoch = max(1, math.ceil(len(train_ds) / hp["batch_size"]))
    total_steps = max(1, math.ceil(steps_per_epoch * hp["epochs"]))
    eval_steps = max(1, steps_per_epoch // t.evals_per_epoch)
    ranks = distributed.check_batch_split(hp["batch_size"])
    metric = config.criteria.metric

    def trainer_metrics(pred: Any) -> dict[str, float]:
        fault_point(f"train:{run_id}")  # test-only crash injection mid-training (first evaluation)
        return compute_metrics(pred.label_ids, np.argmax(pred.predictions, axis=-1), data.label_names)

    tmp_out = scratch_dir(run_dir, run_id)
    rules = health_callbacks(config.rules, on_gpu=on_gpu) if config.rules.enabled else []
    started = time.time()
    status, message = "ok", None
    details: dict[str, Any] = {}
    with Meter(config.metering, phase=f"train {run_id}") as meter:
        args = TrainingArguments(
            output_dir=str(tmp_out),
            per_device_train_batch_size=hp["batch_size"],
            per_device_eval_batch_size=ranks * max(1, 64 // ranks),  # split over the ranks too
            learning_rate=hp["learning_rate"],
            num_train_epochs=hp["epochs"],
            warmup_steps=int(hp["warmup_ratio"] * total_steps),
            weight_decay=hp["weight_decay"],
            eval_strategy="steps",
            eval_steps=eval_steps,
            save_strategy="no",
            logging_strategy="steps",
            logging_steps=1,  # health rules read every step's loss; cheap on a single device
            report_to="none",
            seed=t.seed,
            use_cpu=not on_gpu,
            bf16=precision == "bf16",
            fp16=precision == "fp16",
            torch_compile=t.torch_compile,
            # several processes (accelerate launch) split each batch: same global batch and steps as one
            accelerator_config={"split_batches": True},
            # batches come from advisor.batching.BucketSampler (length buckets, shuffled batches)
            disable_tqdm=False,
        )
        metering = MeteringCallback(meter, model.config, num_labels=len(data.label_names))
        trainer = BucketTrainer(
            model=model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=val_ds,
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            compute_metrics=trainer_metrics,
            callbacks=[metering, *rules, *extra_callbacks],
        )
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_QuietProgress())
        trainer.add_callback(distributed.StopTogether())  # last: sees every other callback's stop
        say(
            f"{run_id}: fine-tuning {candidate.name} ({total_steps} steps, lr {hp['learning_rate']:.2g}, "
            f"{hp['epochs']:g} epochs, {len(train_ds)} examples)"
        )
        try:
            trainer.train()
        except GreenladderError:
            raise
        except Exception as exc:  # a crash in one run must not end the climb; record it
            status, message = "failed", f"training raised {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        for rule in rules:  # watchdog threads end with the run, also when it raised
            if hasattr(rule, "stop"):
                rule.stop()
        firing = first_firing(rules)
        stopped_by = next(
            (getattr(cb, "stop_message", None) for cb in extra_callbacks if getattr(cb, "stop_message", None)), None
        )
        if status == "ok" and firing is not None:
            details["rule"] = {"rule": firing.rule, "step": firing.step, "numbers": dict(firing.numbers)}
            details["steps_saved"] = steps_saved(firing, total_steps)
            learned = _loss_fell(trainer.state.log_history, firing, config.rules.loss_window)
            if learned is not None:
                # a plateau after real learning, or overfitting, is early stopping: keep the model
                details["early_stop"] = f"{firing.rule} at step {firing.step}: {learned}; {firing.message}"
            else:
                status, message = "stopped", f"stopped by rule {firing.rule} at step {firing.step}: {firing.message}"
        elif status == "ok" and stopped_by:
            status, message = "stopped", stopped_by
            details["steps_saved"] = max(0, total_steps - trainer.state.global_step)
        metrics: dict[str, float] = {}
        preds = np.zeros(0, dtype=int)
        if status != "failed":
            texts = column(data.validation, "text")
            # once per job: every rank holds the same weights
            preds = distributed.from_main(lambda: predict_labels(model, tokenizer, texts, t.max_length))
            metrics = compute_metrics(column(data.validation, "label"), preds, data.label_names)
            if status == "stopped" and not all(math.isfinite(v) for v in metrics.values()):
                metrics = {}
    shutil.rmtree(tmp_out, ignore_errors=True)
    history = [
        {"step": h["step"], metric: h.get(f"eval_{metric}"), "eval_loss": h.get("eval_loss")}
        for h in trainer.state.log_history
        if f"eval_{metric}" in h
    ]
    details.update(
        {
            "steps": trainer.state.global_step,
            "total_steps": total_steps,
            "train_examples": len(train_ds),
            "train_fraction": train_fraction,
            "precision": precision,
            "eval_history": history,
            "hf_total_flos": float(getattr(trainer.state, "total_flos", 0.0) or 0.0),
            "elapsed_s": time.time() - started,
        }
    )
    artifact = None
    cost = meter.cost
    if status == "ok" and save_model and distributed.is_main():  # rank 0's record is the job's (agree below)
        dest = run_dir / "runs" / run_id / "model"
        save_model_folder(model, tokenizer, dest)
        artifact = str(dest.relative_to(run_dir))
        details["size_mb"] = dir_size_mb(dest)
        with Meter(config.metering, phase=f"latency {run_id}") as lat_meter:
            metering.meter = lat_meter  # the latency passes are counted too, as this phase's cost
            lat_meter.before_close(metering.flush)
            deployed: Any = model.to(devices.latency_device(config.criteria.latency_device))  # type: ignore[arg-type]
            texts = column(data.validation, "text")
            details.update(latency_ms(lambda batch: predict_labels(deployed, tokenizer, batch, t.max_length), texts))
            details["latency_device"] = devices.describe_device(config.criteria.latency_device)  # CPU by default
        cost = cost + lat_meter.cost
    metering.close()
    if status == "ok" and metrics:
        say(f"{run_id}: validation {metric} {metrics.get(metric, float('nan')):.3f}")
    elif message:
        say(f"{run_id}: {status}: {message}")
    used_candidate = Candidate(
        name=candidate.name,
        kind=candidate.kind,
        source=candidate.source,
        params_total=total_params,
        params_non_embedding=non_emb,
        layers=getattr(model.config, "num_hidden_layers", candidate.layers),
        hidden=getattr(model.config, "hidden_size", candidate.hidden),
        parent_run=candidate.parent_run,
    )
    run = RunResult(
        run_id=run_id,
        candidate=used_candidate,
        hyperparameters=hp,
        status=status,  # type: ignore[arg-type]
        metrics=metrics if status != "failed" else {},
        cost=cost,
        artifact=artifact,
        message=message,
        details=details,
        val_predictions=tuple(int(x) for x in preds) if metrics else (),
    )
    return distributed.agree(run)  # one record per job: rank 0's, costed over every rank


def save_model_folder(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dest: Path) -> None:
    """Save model (safetensors) and tokenizer into ``dest`` atomically: a reader never sees half a folder."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    try:
        with quiet_libraries():
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
