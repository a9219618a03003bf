"""Fine-tune one candidate with one set of hyperparameters and return a metered RunResult.

This is the only place a transformer is trained for the advisor. It uses the Hugging Face
``Trainer`` (under ``accelerate launch`` the ranks train in lockstep: see advisor.distributed), with dynamic
padding, length-bucketed training batches and length-sorted evaluation (padding is compute spent on
nothing), training-health rules, early stopping, best-weight keeping and metering as Trainer
callbacks, and optional callbacks from the tuner (pruning).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback, set_seed

from advisor import distributed
from advisor.atomic import atomic_copytree
from advisor.config.settings import Config, TrainConfig
from advisor.data.task import TaskData, column
from advisor.faults import fault_point
from advisor.metering import devices
from advisor.metering.cost import Meter
from advisor.models.loading import count_parameters, load_for_classification
from advisor.runkey import RunKey
from advisor.training.attempt import Fitted, Held, Setup, fit_with_retry
from advisor.training.attempt import train_attempt as train_attempt  # named here too, where callers first found it
from advisor.training.baseline import latency_ms
from advisor.training.batching import sort_by_length
from advisor.training.best import MetricsFn, eval_history, evaluation_rows
from advisor.training.counting import MeteringCallback
from advisor.training.hf_trainer import precision_here
from advisor.training.inference import predict_labels, tokenize
from advisor.training.stopping import bind_meter, run_stop
from advisor.types import Candidate, Cost, Footprint, RunResult, RunStatus
from advisor.verdicts.criteria import compute_metrics

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
    """The first ``fraction`` of the rows in a stratified order (:func:`advisor.data.splitting.stratified_order`):
    every class in its share, and a larger fraction holds a smaller one."""
    if fraction >= 1.0:
        return dataset
    from advisor.data.splitting import stratified_prefix

    n = max(2, int(round(len(dataset) * fraction)))
    return dataset.select(stratified_prefix(column(dataset, "label"), n, seed))


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
    ``criteria.metric`` (:class:`advisor.training.best.BestWeights`); the metrics and ``val_predictions``
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
        extra_callbacks: more Trainer callbacks (the tuner's pruning callback); each
            :class:`advisor.training.stopping.RunWatcher` is handed the run's meter and evaluations.

    Returns:
        A RunResult: ``ok`` with validation metrics (also when early stopping ended it),
        ``stopped`` when a health rule or the pruner stopped it (with the best evaluation's metrics
        when there was one), ``budget`` when the budget watch did, ``failed`` when training raised.
    """
    run_id = key.run_id
    say = progress or (lambda _m: None)
    hp = resolve_hparams(config, hparams or {})
    load = functools.partial(_load, model_source, data.label_names, config.train)
    held = Held(*load(), batch=(hp["batch_size"], 1))
    rows = _rows(data, held.tokenizer, config.train, train_fraction)
    total_params, non_emb = count_parameters(held.model)
    distributed.check_batch_split(hp["batch_size"])
    tmp_out = scratch_dir(run_dir, run_id)
    started = time.time()
    details: dict[str, Any] = {}
    with Meter(config.metering, phase=f"train {run_id}") as meter:
        metering = MeteringCallback(meter, held.model.config, num_labels=len(data.label_names))
        bind_meter(extra_callbacks, meter, metering)  # the budget watch reads this run's meter as it goes
        steps = _steps(len(rows[0]), hp, config.train.evals_per_epoch)
        metrics_fn = _metrics_fn(run_id, data)
        setup = Setup(
            run_id, config, hp, *rows, steps, tmp_out, metering, extra_callbacks, metrics_fn, len(data.label_names), say
        )
        fit = fit_with_retry(held, load, setup, candidate.name, details)
        status, message, metrics, judged = _outcome(held, fit, setup, data, details)
    shutil.rmtree(tmp_out, ignore_errors=True)
    details.update(_facts(fit, setup, train_fraction, started))
    if held.batch[1] > 1:
        details["per_device_batch_size"], details["gradient_accumulation_steps"] = held.batch
    artifact, footprint, cost = None, Footprint(params=total_params), meter.cost
    # rank 0's record is the job's (agree below); a budget-stopped run's partial model is judged and kept
    if status in ("ok", "budget") and metrics and save_model and distributed.is_main():
        artifact, footprint, latency_cost = _deliver(held, data, config, run_dir, run_id, metering, total_params)
        cost = cost + latency_cost
    metering.close()
    _say_ending(say, run_id, (status, message), metrics, config.criteria.metric, fit.best.step)
    used = _used_candidate(candidate, held.model, total_params, non_emb)
    predictions = tuple(int(x) for x in judged) if metrics else ()
    record = RunResult(key, used, hp, status, metrics, cost, artifact, message, details=details, footprint=footprint)
    return distributed.agree(dataclasses.replace(record, val_predictions=predictions, **_typed_facts(fit, setup)))


def _load(source: str, label_names: Sequence[str], t: TrainConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    set_seed(t.seed)  # a retry after an OOM starts from the very same weights and head
    with quiet_libraries():
        return load_for_classification(
            source, label_names, allow_pickle=t.allow_pickle, trust_remote_code=t.trust_remote_code
        )


def _rows(
    data: TaskData, tokenizer: PreTrainedTokenizerBase, t: TrainConfig, train_fraction: float
) -> tuple[Any, Any, np.ndarray, list[int] | None]:
    """The tokenised training rows, the evaluation rows sorted by length with their ``order``, and
    the validation ``sample`` they are (None: the whole split)."""
    with quiet_libraries():
        train_ds = tokenize(subsample(data.train, train_fraction, t.seed), tokenizer, t.max_length)
        sample = evaluation_rows(column(data.validation, "label"), t.eval_rows, t.seed)
        scored = data.validation if sample is None else data.validation.select(sample)
        val_ds, val_order = sort_by_length(tokenize(scored, tokenizer, t.max_length))
    return train_ds, val_ds, val_order, sample


def _steps(rows: int, hp: Mapping[str, Any], evals_per_epoch: int) -> tuple[int, int]:
    """(total optimizer steps, steps between evaluations) of ``hp`` on ``rows`` training rows."""
    steps_per_epoch = max(1, math.ceil(rows / hp["batch_size"]))
    return max(1, math.ceil(steps_per_epoch * hp["epochs"])), max(1, steps_per_epoch // evals_per_epoch)


def _metrics_fn(run_id: str, data: TaskData) -> MetricsFn:
    def metrics_fn(labels: np.ndarray, ids: np.ndarray) -> dict[str, float]:
        fault_point(f"train:{run_id}")  # test-only crash injection mid-training (first evaluation)
        return compute_metrics(labels, ids, data.label_names)

    return metrics_fn


def _outcome(
    held: Held, fit: Fitted, s: Setup, data: TaskData, details: dict[str, Any]
) -> tuple[RunStatus, str | None, dict[str, float], Any]:
    """The run's status, message, metrics and per-row validation predictions, with the kept (best)
    weights loaded into the model: they are the ones judged, saved and timed."""
    if fit.error is not None:
        return "failed", fit.error, {}, fit.best.predictions
    stop = run_stop(fit.callbacks, s.steps[0], fit.trainer.state.global_step, s.config.criteria.metric)
    details.update(stop.details)
    if stop.status == "ok" and fit.best.step is None:
        return "failed", "no evaluation of the validation split completed; nothing to judge", {}, fit.best.predictions
    fit.best.restore(held.model)
    metrics, judged = fit.best.metrics, fit.best.predictions
    if metrics and s.sample is not None:  # the kept weights, scored once on the whole split
        judged = predict_labels(held.model, held.tokenizer, column(data.validation, "text"), s.config.train.max_length)
        metrics = compute_metrics(column(data.validation, "label"), judged, data.label_names)
        s.metering.flush()
        details["eval_rows"] = len(s.sample)
    return stop.status, stop.message, metrics, judged


def _typed_facts(fit: Fitted, s: Setup) -> dict[str, Any]:
    """The record's typed training facts: the rows it was fitted on and each evaluation."""
    return {
        "train_examples": len(s.train),
        "evaluations": eval_history(fit.trainer.state.log_history, s.config.criteria.metric),
    }


def _facts(fit: Fitted, s: Setup, train_fraction: float, started: float) -> dict[str, Any]:
    """The run's training facts for its record."""
    state = fit.trainer.state
    return {
        "steps": state.global_step,
        "total_steps": s.steps[0],
        "best_step": fit.best.step,
        "train_fraction": train_fraction,
        "precision": precision_here(s.config.train.precision),
        "hf_total_flos": float(getattr(state, "total_flos", 0.0) or 0.0),
        "elapsed_s": time.time() - started,
    }


def _deliver(
    held: Held,
    data: TaskData,
    config: Config,
    run_dir: Path,
    run_id: str,
    metering: MeteringCallback,
    params: int,
) -> tuple[str, Footprint, Cost]:
    """Save the judged model under ``runs/<run_id>/model`` and time it: (its folder, relative to
    ``run_dir``; its footprint; the latency passes' cost)."""
    dest = run_dir / "runs" / run_id / "model"
    model, tokenizer = held.model, held.tokenizer
    save_model_folder(model, tokenizer, dest)
    with Meter(config.metering, phase=f"latency {run_id}") as lat_meter:
        metering.meter = lat_meter  # the latency passes are counted too, as this phase's cost
        lat_meter.before_close(metering.flush)
        deployed: Any = model.to(devices.latency_device(config.criteria.latency_device))  # type: ignore[arg-type]
        texts = column(data.validation, "text")
        max_length = config.train.max_length
        lat = latency_ms(lambda batch: predict_labels(deployed, tokenizer, batch, max_length), texts)
    footprint = Footprint(
        size_mb=dir_size_mb(dest),
        params=params,
        latency_device=devices.describe_device(config.criteria.latency_device),  # CPU by default
        latency_ms_p50=lat["latency_ms_p50"],
        latency_ms_p95=lat["latency_ms_p95"],
    )
    return str(dest.relative_to(run_dir)), footprint, lat_meter.cost


def _say_ending(
    say: Callable[[str], None],
    run_id: str,
    ending: tuple[str, str | None],
    metrics: Mapping[str, float],
    metric: str,
    best_step: int | None,
) -> None:
    status, message = ending
    if status == "ok" and metrics:
        say(f"{run_id}: validation {metric} {metrics.get(metric, float('nan')):.3f} (best at step {best_step})")
    elif message:
        say(f"{run_id}: {status}: {message}")


def _used_candidate(candidate: Candidate, model: PreTrainedModel, params: int, non_embedding: int) -> Candidate:
    """``candidate`` with the trained model's measured size and shape."""
    return Candidate(
        name=candidate.name,
        kind=candidate.kind,
        source=candidate.source,
        params_total=params,
        params_non_embedding=non_embedding,
        layers=getattr(model.config, "num_hidden_layers", candidate.layers),
        hidden=getattr(model.config, "hidden_size", candidate.hidden),
        parent_run=candidate.parent_run,
    )


def save_model_folder(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dest: Path) -> None:
    """Save model (safetensors) and tokenizer into ``dest`` atomically: a reader never sees half a folder.

    The folder and its files get the user's umask (:func:`advisor.atomic.atomic_copytree`).
    """

    def build(tmp: Path) -> None:
        with quiet_libraries():
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)

    atomic_copytree(build, dest)
