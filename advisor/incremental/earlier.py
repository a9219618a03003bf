"""The earlier model that ``advise --from`` continues: made ready, and judged as it stands.

What is known of the rows it was trained on (the validation rows it never saw), its head extended to
new labels when asked, the forecast cost of one validation pass, its score on the new validation
split before any training (a metered forward pass), and the same rung of the earlier ladder from its
pre-trained checkpoint, which ``incremental.compare_scratch`` trains for the comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from advisor.climb.choices import WARM_KEYS
from advisor.config.settings import Config
from advisor.data.task import TaskData, column
from advisor.errors import RunDirError
from advisor.incremental.head import extend_head
from advisor.incremental.inputs import earlier_train_texts, overlap_notes, recommended_run
from advisor.metering.cost import Meter
from advisor.metering.flops import encoder_forward_flops
from advisor.models.ladder import load_ladder, materialise
from advisor.models.loading import load_for_classification
from advisor.outcome import Report
from advisor.runkey import RunKey
from advisor.training.counting import MeteringCallback
from advisor.training.inference import predict_labels
from advisor.training.train import quiet_libraries
from advisor.types import Candidate, RunResult
from advisor.verdicts.criteria import compute_metrics

Progress = Callable[[str], None]


class Earlier(NamedTuple):
    """The earlier model and what is known of the rows it was trained on."""

    name: str  # the recommended rung
    run: RunResult  # the earlier run that trained it, from its run directory
    source: Path  # where the model to continue lies (its head extended, if asked)
    seen: frozenset[str] | None  # its training texts, when the earlier run's data can be read back
    unseen_rows: list[int]  # validation rows it was not trained on
    notes: list[str]


def prepare_earlier(
    prev: Report, from_dir: Path, data: TaskData, run_dir: Path, config: Config, say: Progress
) -> Earlier:
    """The earlier recommended run, the validation rows it never saw, and its model (head extended to
    new classes with ``incremental.extend_head``)."""
    run = recommended_run(prev, from_dir)
    seen = earlier_train_texts(from_dir, say)
    val_texts = column(data.validation, "text")
    unseen_rows = [i for i, t in enumerate(val_texts) if seen is None or t not in seen]
    notes = overlap_notes(seen, len(val_texts) - len(unseen_rows), column(data.test, "text"))
    source = from_dir / "model"
    old_labels = list(prev.dataset["label_names"])
    new_labels = data.label_names
    if config.incremental.extend_head and set(new_labels) != set(old_labels):
        source = extend_head(source, old_labels, new_labels, run_dir / "runs" / "head", config)
        notes.append(f"the head was extended to {', '.join(new_labels)}; earlier classes kept their weights")
    return Earlier(run.candidate.name, run, source, seen, unseen_rows, notes)


def val_pass_flops(source: Path, data: TaskData, config: Config) -> float:
    """Forecast FLOPs of one validation pass of the model at ``source``: the meter's forward formula
    over the split's token lengths, as the climb forecasts a rung's (``Climb._val_pass_flops``)."""
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(source))
    model_config = AutoConfig.from_pretrained(str(source))
    limit = min(config.train.max_length, tok.model_max_length)
    ids = tok(column(data.validation, "text"), truncation=True, max_length=limit)["input_ids"]
    return sum(encoder_forward_flops(model_config, len(x), len(data.label_names)) for x in ids)


def judge_earlier(name: str, source: Path, from_dir: Path, data: TaskData, config: Config) -> RunResult:
    """The earlier model as it stands, judged on the new validation split (a forward pass, metered)."""
    t = config.train
    with Meter(config.metering, phase=f"judge {name}-earlier") as meter:
        with quiet_libraries():
            model, tok = load_for_classification(
                str(source), data.label_names, allow_pickle=t.allow_pickle, trust_remote_code=t.trust_remote_code
            )
        counter = MeteringCallback(meter, num_labels=len(data.label_names))
        counter.attach(model)
        preds = predict_labels(model, tok, column(data.validation, "text"), t.max_length)
        counter.close()
    return RunResult(
        key=RunKey("earlier", name),
        candidate=Candidate(name=name, kind="incremental", source=str(source), parent_run=str(from_dir)),
        hyperparameters={},
        status="ok",
        metrics=compute_metrics(column(data.validation, "label"), preds, data.label_names),
        cost=meter.cost,
        message="the earlier model, not trained again, judged on the new validation split",
        val_predictions=tuple(int(p) for p in preds),
    )


def from_checkpoint(
    config: Config, prev: Report, earlier: RunResult, say: Progress
) -> tuple[Candidate, str, dict[str, Any]]:
    """The earlier run's rung from its pre-trained checkpoint, as the from-scratch comparison trains
    it: its candidate, the local folder to train from, and the earlier winning settings.

    Raises:
        RunDirError: the earlier run's ladder has no such rung (the saving can then only be forecast).
    """
    name = earlier.candidate.name
    ladder_name = str(prev.config.get("ladder", {}).get("name", config.ladder.name))
    rungs = {r.name: r for r in load_ladder(ladder_name)}
    if name not in rungs:
        raise RunDirError(
            f"--compare-scratch: the ladder {ladder_name!r} of the earlier run has no rung {name!r}; "
            "run without --compare-scratch (the saving is then forecast)."
        )
    rung = rungs[name]
    source = str(materialise(rung, config.ladder.cache_dir, progress=say, allow_pickle=config.train.allow_pickle))
    hp = {k: earlier.hyperparameters[k] for k in WARM_KEYS if k in earlier.hyperparameters}
    hp["batch_size"] = config.train.batch_size
    return Candidate(name=name, kind="finetune", source=rung.source), source, hp
