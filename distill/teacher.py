"""Run the teacher once and cache what the student learns from.

The teacher's logits (and, for the hidden-state loss, mean-pooled final hidden states) over the
training texts, labelled and unlabelled, are stored as
safetensors under ``<cache_dir>/teacher_logits/<key>.safetensors``. The key is a SHA-256 over the
teacher's weights, the texts and ``max_length``, so every epoch, seed and control run of a
distillation, and every later run on the same data, reads the file instead of re-running the
teacher; any change to the weights or data gives a new key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from advisor.atomic import write_file_atomic
from advisor.climb.budget import BudgetCallback
from advisor.errors import BudgetError, ModelError
from advisor.metering.cost import Meter
from advisor.models.loading import load_for_classification
from advisor.training.counting import MeteringCallback
from advisor.training.inference import predict_logits
from advisor.training.train import quiet_libraries
from advisor.types import Cost
from distill.losses import mean_pool

#: bump when the cached content changes meaning, so old files are not read as new ones
_CACHE_FORMAT = "2"


@dataclass(frozen=True)
class TeacherOutputs:
    """What the teacher said about each row, in row order."""

    #: ``[N, C]`` float32 logits, outputs in the data's label order
    logits: torch.Tensor
    #: ``[N, H_t]`` float32 mean-pooled last hidden states (None unless asked for)
    pooled: torch.Tensor | None
    key: str
    path: Path
    #: True when read from the cache (the teacher did not run)
    cache_hit: bool


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over every tensor of the state dict (names, shapes, dtypes and bytes), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def texts_digest(texts: Sequence[str]) -> str:
    """SHA-256 over the texts in order (length-prefixed, so boundaries cannot collide)."""
    digest = hashlib.sha256()
    for text in texts:
        raw = text.encode("utf-8")
        digest.update(len(raw).to_bytes(8, "little"))
        digest.update(raw)
    return digest.hexdigest()


def cache_key(weights_sha: str, data_sha: str, max_length: int) -> str:
    return hashlib.sha256(f"{_CACHE_FORMAT}|{weights_sha}|{data_sha}|{max_length}".encode()).hexdigest()


def _pooled(output: Any, attention_mask: torch.Tensor) -> torch.Tensor:
    return mean_pool(output.hidden_states[-1], attention_mask)


def teacher_outputs(
    teacher: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int,
    cache_dir: str | Path,
    with_pooled: bool = False,
    batch_size: int = 64,
    meter: Meter | None = None,
    progress: Callable[[str], None] | None = None,
    before_running: Callable[[], None] = lambda: None,
) -> TeacherOutputs:
    """The teacher's logits (and pooled states) for ``texts``, from the cache or computed once.

    Args:
        teacher: the fine-tuned teacher.
        tokenizer: its tokenizer (the student may have another one: logits are per text).
        texts: labelled training texts, then any unlabelled ones, in the order rows are indexed.
        max_length: truncation length (part of the key: it changes what the teacher sees).
        cache_dir: folder under which ``teacher_logits/`` is kept.
        with_pooled: also keep the mean-pooled last hidden state (for the hidden-state loss).
        batch_size: rows per teacher forward pass.
        meter: an open Meter the teacher's forward passes are counted into (as evaluation FLOPs).
        progress: called with one-line progress messages.
        before_running: called on a cache miss, before the teacher runs (a budget check that raises
            :class:`PassRefused` when the pass cannot fit).
    """
    say = progress or (lambda _msg: None)
    key = cache_key(weights_digest(teacher), texts_digest(texts), max_length)
    path = Path(cache_dir) / "teacher_logits" / f"{key}.safetensors"
    if path.is_file():
        loaded = load_file(str(path))
        if loaded["logits"].shape[0] == len(texts) and (not with_pooled or "pooled" in loaded):
            say(f"teacher logits: cache hit {path.name[:12]}... ({len(texts)} rows), the teacher is not run")
            return TeacherOutputs(loaded["logits"], loaded.get("pooled"), key, path, cache_hit=True)
    before_running()
    say(f"teacher logits: running the teacher over {len(texts)} texts (once; cached at {path})")
    counter = MeteringCallback(meter) if meter is not None else None
    if counter is not None:
        counter.attach(teacher)
    try:
        logits, pooled = predict_logits(
            teacher, tokenizer, list(texts), max_length, batch_size, features=_pooled if with_pooled else None
        )
    finally:
        if counter is not None:
            counter.close()  # counts stay until the meter closes and flushes them
    tensors = {"logits": logits.contiguous()}
    if pooled is not None:
        tensors["pooled"] = pooled.contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata={"max_length": str(max_length)}))
    return TeacherOutputs(logits, pooled, key, path, cache_hit=False)


def _cost_file(outputs: TeacherOutputs) -> Path:
    return outputs.path.with_name(f"{outputs.key}.cost.json")


def save_pass_cost(outputs: TeacherOutputs, cost: Cost) -> None:
    """Keep what the pass that made the cache file cost beside it, for a later cache hit to report."""
    _cost_file(outputs).write_text(json.dumps(cost.to_dict()), encoding="utf-8")


def pass_cost(outputs: TeacherOutputs) -> Cost | None:
    """What the pass that made the cache file cost (None when not recorded: an older cache)."""
    path = _cost_file(outputs)
    return Cost.from_dict(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None


class PassRefused(BudgetError):
    """A teacher pass that cannot fit in the budget was not started; ``spent``: what the distillation
    had spent before it (so the caller can still record that cost)."""

    def __init__(self, message: str, spent: Cost) -> None:
        super().__init__(message)
        self.spent = spent


def refuse_pass(watch: Sequence[BudgetCallback], what: str, flops: float, spent: Cost) -> None:
    """Raise :class:`PassRefused` when a budget watch says a pass of ``flops`` cannot start now."""
    for cb in watch:
        why = cb.refuses(what, flops)
        if why is not None:
            raise PassRefused(why, spent)


def head_order(path_or_id: str, label_names: Sequence[str]) -> list[int] | None:
    """Which output of the checkpoint's classifier is each label of the data, matched by name.

    Returns:
        ``order[i]`` = the checkpoint's output for ``label_names[i]``; None when the checkpoint has
        no sequence-classification head (an encoder to fine-tune first).

    Raises:
        ModelError: the head classifies into other labels (never swapped silently), or into
            generic ``LABEL_<i>`` names of another count.
    """
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path_or_id)
    except (OSError, ValueError):
        return None
    archs = getattr(config, "architectures", None) or []
    if not any("ForSequenceClassification" in a for a in archs):
        return None
    names = [str(config.id2label[i]) for i in sorted(config.id2label)]
    wanted = [str(n) for n in label_names]
    if sorted(names) == sorted(wanted):
        return [names.index(n) for n in wanted]
    generic = all(n == f"LABEL_{i}" for i, n in enumerate(names))
    if generic and len(names) == len(wanted):
        # nothing names the outputs: position is all there is (not yet flagged in the report)
        return list(range(len(wanted)))
    raise ModelError(
        f"The teacher {path_or_id} classifies into {names}, but the data's labels are {wanted}. "
        "Labels are matched by name: rename the data's labels to the teacher's, or pass a teacher "
        "fine-tuned on these labels (or an encoder without a head, which is fine-tuned first)."
    )


def _reorder_head(model: torch.nn.Module, order: Sequence[int]) -> None:
    """Permute the classifier's output rows so output ``i`` is the data's label ``i``."""
    if list(order) == list(range(len(order))):
        return
    heads = [
        m
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear)
        and m.out_features == len(order)
        and name.split(".")[0] in ("classifier", "score")
    ]
    if len(heads) != 1:
        raise ModelError(
            f"Cannot find the classification layer of {type(model).__name__} to match its labels by name; "
            "order the data's labels as the teacher's id2label does."
        )
    index = torch.as_tensor(list(order))
    with torch.no_grad():
        heads[0].weight.copy_(heads[0].weight[index])
        if heads[0].bias is not None:
            heads[0].bias.copy_(heads[0].bias[index])


def load_teacher(
    source: str, label_names: Sequence[str], *, allow_pickle: bool = False, seed: int = 0
) -> tuple[torch.nn.Module, Any, bool]:
    """Load the teacher with its outputs in the data's label order (a new head drawn from ``seed``).

    Returns:
        ``(model, tokenizer, needs_finetune)``: ``needs_finetune`` is True when the checkpoint had no
        classification head (a new one was made for the labels).

    Raises:
        ModelError: labels that do not match by name, pickled weights without ``allow_pickle``, or
            an unloadable folder.
    """
    order = head_order(source, label_names)
    # a checkpoint without a head gets a new one drawn from torch's generator, whose start differs
    # per process: seeded, the same command fine-tunes the same teacher
    torch.manual_seed(seed)
    with quiet_libraries():
        model, tokenizer = load_for_classification(source, label_names, allow_pickle=allow_pickle)
    if order is not None:
        # load_for_classification names the outputs in the data's order; the weights are still in
        # the checkpoint's, so move the rows to match
        _reorder_head(model, order)
    return model, tokenizer, order is None
