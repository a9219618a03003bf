"""Fine-tune one candidate with one set of hyperparameters and return a metered RunResult.

This is the only place a transformer is trained for the advisor. It uses the Hugging Face
``Trainer`` (under ``accelerate launch`` the ranks train in lockstep: see advisor.distributed), with dynamic
padding, length-bucketed training batches and length-sorted evaluation (padding is compute spent on
nothing), training-health rules, early stopping, best-weight keeping and metering as Trainer
callbacks, and optional callbacks from the tuner (pruning).
"""

from __future__ import annotations

import contextlib
import gc
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    set_seed,
)

from advisor import devices, distributed
from advisor.baseline import latency_ms
from advisor.batching import is_out_of_memory, smaller_batch, sort_by_length
from advisor.best import BestWeights, EarlyStopping, eval_history, evaluation_rows, patience_for
from advisor.config import Config
from advisor.cost import Meter
from advisor.counting import MeteringCallback
from advisor.criteria import compute_metrics
from advisor.data import TaskData, column
from advisor.errors import GreenladderError
from advisor.fetch import atomic_copytree
from advisor.hf_trainer import build_trainer
from advisor.inference import predict_labels, tokenize
from advisor.ledger import fault_point
from advisor.loading import count_parameters, load_for_classification
from advisor.rules import first_firing, health_callbacks, steps_saved
from advisor.runkey import RunKey
from advisor.types import Candidate, Footprint, RunResult
from advisor.watchdog import Stalled, StallRule

#: hyperparameters a trial may set; anything else is a programming error
HPARAM_KEYS = ("learning_rate", "epochs", "batch_size", "warmup_ratio", "weight_decay")


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
    key: RunKey,
    hparams: Mapping[str, Any] | None = None,
    *,
    train_fraction: float = 1.0,
    save_model: bool = True,
    extra_callbacks: Sequence[TrainerCallback] = (),
    progress: Callable[[str], None] | None = None,
) -> RunResult:
    """Fine-tune ``model_source`` on ``data.train`` and judge it on ``data.validation``.

    The weights kept, judged, saved and returned are those of the evaluation with the best
    ``criteria.metric`` (:class:`advisor.best.BestWeights`); the metrics and ``val_predictions``
    are that evaluation's, so validation is not run again after training. An out-of-memory error
    restarts the trial at half the rows per device with twice the gradient accumulation (the
    same effective batch), recorded in ``details["oom_retries"]``.

    Args:
        candidate: what is being trained (recorded in the result).
        model_source: a local transformers folder (or a hub id when online).
        data: the task's splits; the test split is not touched here.
        config: resolved configuration (train, rules, metering, criteria.metric are used).
        run_dir: the advisor's run directory; the model is saved under ``runs/<run_id>/model``.
        key: who the run is (its role, rung and number); its run id names it in the ledger.
        hparams: overrides of ``config.train`` (learning_rate, epochs, batch_size, warmup_ratio, weight_decay).
        train_fraction: train on this share of the training split (small experiments first).
        save_model: save the fine-tuned model (off for trials that only inform the search).
        extra_callbacks: more Trainer callbacks (the tuner's pruning callback).

    Returns:
        A RunResult: ``ok`` with validation metrics (also when early stopping ended it),
        ``stopped`` when a health rule or the pruner stopped it (with the best evaluation's metrics
        when there was one), ``failed`` when training raised.
    """
    run_id = key.run_id
    say = progress or (lambda _m: None)
    hp = resolve_hparams(config, hparams or {})
    t, metric = config.train, config.criteria.metric

    def load() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        set_seed(t.seed)  # a retry after an OOM starts from the very same weights and head
        with quiet_libraries():
            return load_for_classification(
                model_source, data.label_names, allow_pickle=t.allow_pickle, trust_remote_code=t.trust_remote_code
            )

    model, tokenizer = load()
    with quiet_libraries():
        train_ds = tokenize(subsample(data.train, train_fraction, t.seed), tokenizer, t.max_length)
        sample = evaluation_rows(column(data.validation, "label"), t.eval_rows, t.seed)
        scored = data.validation if sample is None else data.validation.select(sample)
        val_ds, val_order = sort_by_length(tokenize(scored, tokenizer, t.max_length))
    total_params, non_emb = count_parameters(model)
    steps_per_epoch = max(1, math.ceil(len(train_ds) / hp["batch_size"]))
    total_steps = max(1, math.ceil(steps_per_epoch * hp["epochs"]))
    eval_steps = max(1, steps_per_epoch // t.evals_per_epoch)
    r = config.rules
    distributed.check_batch_split(hp["batch_size"])

    def metrics_fn(labels: np.ndarray, ids: np.ndarray) -> dict[str, float]:
        fault_point(f"train:{run_id}")  # test-only crash injection mid-training (first evaluation)
        return compute_metrics(labels, ids, data.label_names)

    tmp_out = scratch_dir(run_dir, run_id)
    started = time.time()
    status, message = "ok", None
    details: dict[str, Any] = {}
    batch = (hp["batch_size"], 1)
    with Meter(config.metering, phase=f"train {run_id}") as meter:
        metering = MeteringCallback(meter, model.config, num_labels=len(data.label_names))
        for cb in extra_callbacks:  # the budget watch reads this run's meter as it goes
            if hasattr(cb, "bind"):
                cb.bind(meter, metering)
        while True:
            if t.freeze_embeddings:
                model.get_input_embeddings().requires_grad_(False)
            rules = health_callbacks(r, on_gpu=torch.cuda.is_available())
            best = BestWeights(metric, metrics_fn, val_order)
            for cb in extra_callbacks:  # the pruner compares trials on the rows each evaluation scored
                if hasattr(cb, "watch"):
                    cb.watch(best, len(data.label_names))
            patience = patience_for(math.ceil(total_steps / eval_steps), r.early_stop_share, r.early_stop_min_patience)
            stopper = EarlyStopping(metric, patience) if r.enabled else None
            callbacks = [metering, best, *rules, *([stopper] if stopper else []), *extra_callbacks]
            trainer = build_trainer(
                model, tokenizer, (train_ds, val_ds), tmp_out, hp, batch, (total_steps, eval_steps), callbacks, config
            )
            say(
                f"{run_id}: fine-tuning {candidate.name} ({total_steps} steps, lr {hp['learning_rate']:.2g}, "
                f"{hp['epochs']:g} epochs, {len(train_ds)} examples"
                + (f", batch {batch[0]} x {batch[1]} accumulated" if batch[1] > 1 else "")
                + ")"
            )
            smaller: tuple[int, int] | None = None
            try:
                try:
                    trainer.train()
                finally:  # watchdogs end with the run, also when it raised; no Stalled after this
                    for rule in rules:
                        if isinstance(rule, StallRule):
                            rule.stop()
            except Stalled:
                pass  # the stall rule holds the firing; the run is recorded as stopped below
            except GreenladderError:
                raise
            except Exception as exc:  # a crash in one run must not end the climb; record it
                smaller = smaller_batch(*batch) if is_out_of_memory(exc) else None
                if smaller is not None:
                    details.setdefault("oom_retries", []).append(
                        {"batch_size": batch[0], "accumulation": batch[1], "error": _first_line(exc)}
                    )
                else:
                    status, message = "failed", f"training raised {type(exc).__name__}: {_first_line(exc)}"
            if smaller is None:
                break
            # outside the except block: the exception's traceback no longer pins the failed step's tensors
            say(f"{run_id}: out of memory at batch {batch[0]}; again at {smaller[0]} x {smaller[1]} accumulated")
            metering.close()  # its hook holds the old model; the next Trainer attaches it to the new one
            del trainer, model
            _release_memory()
            batch = smaller
            model, tokenizer = load()
        firing = first_firing(rules)
        stopper_cb = next((cb for cb in extra_callbacks if getattr(cb, "stop_message", None)), None)
        pruned = getattr(stopper_cb, "stop_message", None)
        if status == "ok" and firing is not None:
            details["rule"] = {"rule": firing.rule, "step": firing.step, "numbers": dict(firing.numbers)}
            details["steps_saved"] = steps_saved(firing, total_steps)
            status, message = "stopped", f"stopped by rule {firing.rule} at step {firing.step}: {firing.message}"
        elif status == "ok" and pruned:
            # the pruner's "stopped", or the budget's "budget" (whose partial model is judged and kept)
            status, message = getattr(stopper_cb, "stop_status", "stopped"), pruned
            details["steps_saved"] = max(0, total_steps - trainer.state.global_step)
        elif status == "ok" and stopper is not None and stopper.stopped_step is not None:
            details["early_stop"] = stopper.describe(metric)
            details["steps_saved"] = max(0, total_steps - trainer.state.global_step)
        if status == "ok" and best.step is None:
            status, message = "failed", "no evaluation of the validation split completed; nothing to judge"
        if status != "failed":
            best.restore(model)  # the judged weights are the ones saved and measured below
        metrics, judged = (best.metrics, best.predictions) if status != "failed" else ({}, best.predictions)
        if metrics and sample is not None:  # the kept weights, scored once on the whole split
            judged = predict_labels(model, tokenizer, column(data.validation, "text"), t.max_length)
            metrics = compute_metrics(column(data.validation, "label"), judged, data.label_names)
            metering.flush()
            details["eval_rows"] = len(sample)
    shutil.rmtree(tmp_out, ignore_errors=True)
    details.update(
        {
            "steps": trainer.state.global_step,
            "total_steps": total_steps,
            "best_step": best.step,
            "train_examples": len(train_ds),
            "train_fraction": train_fraction,
            "precision": devices.resolve_precision(
                t.precision, torch.cuda.is_available(), torch.cuda.is_available() and torch.cuda.is_bf16_supported()
            ),
            "eval_history": eval_history(trainer.state.log_history, metric),
            "hf_total_flos": float(getattr(trainer.state, "total_flos", 0.0) or 0.0),
            "elapsed_s": time.time() - started,
        }
    )
    if batch[1] > 1:
        details["per_device_batch_size"], details["gradient_accumulation_steps"] = batch
    artifact = None
    footprint = Footprint(params=total_params)
    cost = meter.cost
    # rank 0's record is the job's (agree below); a budget-stopped run's partial model is judged and kept
    if status in ("ok", "budget") and metrics and save_model and distributed.is_main():
        dest = run_dir / "runs" / run_id / "model"
        save_model_folder(model, tokenizer, dest)
        artifact = str(dest.relative_to(run_dir))
        with Meter(config.metering, phase=f"latency {run_id}") as lat_meter:
            metering.meter = lat_meter  # the latency passes are counted too, as this phase's cost
            lat_meter.before_close(metering.flush)
            deployed: Any = model.to(devices.latency_device(config.criteria.latency_device))  # type: ignore[arg-type]
            texts = column(data.validation, "text")
            lat = latency_ms(lambda batch: predict_labels(deployed, tokenizer, batch, t.max_length), texts)
        footprint = Footprint(
            size_mb=dir_size_mb(dest),
            params=total_params,
            latency_device=devices.describe_device(config.criteria.latency_device),  # CPU by default
            latency_ms_p50=lat["latency_ms_p50"],
            latency_ms_p95=lat["latency_ms_p95"],
        )
        cost = cost + lat_meter.cost
    metering.close()
    if status == "ok" and metrics:
        say(f"{run_id}: validation {metric} {metrics.get(metric, float('nan')):.3f} (best at step {best.step})")
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
    return distributed.agree(
        RunResult(
            key,
            used_candidate,
            hp,
            status,  # type: ignore[arg-type]
            metrics,
            cost,
            artifact=artifact,
            message=message,
            details=details,
            footprint=footprint,
            val_predictions=tuple(int(x) for x in judged) if metrics else (),
        )
    )


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:200]


def _release_memory() -> None:
    """Give back what a failed attempt held before the next one allocates (host and device)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def save_model_folder(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dest: Path) -> None:
    """Save model (safetensors) and tokenizer into ``dest`` atomically: a reader never sees half a folder.

    The folder and its files get the user's umask (:func:`advisor.fetch.atomic_copytree`).
    """

    def build(tmp: Path) -> None:
        with quiet_libraries():
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)

    atomic_copytree(build, dest)
