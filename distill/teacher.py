"""Run the teacher once and cache what the student learns from.

The teacher's logits and mean-pooled final hidden states over the training texts are stored as
safetensors under ``<cache_dir>/teacher_logits/<key>.safetensors``. The key is a SHA-256 over the
teacher's weights, the texts and ``max_length``, so every epoch, seed and control run of a
distillation, and every later run on the same data, reads the file instead of re-running the
teacher; any change to the weights or data gives a new key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from distill.batching import encode, pad_id_of
from distill.inference import predict

#: bump when the cached content changes meaning, so old files are not read as new ones
_CACHE_FORMAT = "1"


@dataclass(frozen=True)
class TeacherOutputs:
    """What the teacher said about each training row, in dataset order."""

    #: ``[N, C]`` float32 logits
    logits: torch.Tensor
    #: ``[N, H_t]`` float32 mean-pooled last hidden states
    pooled: torch.Tensor
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


def teacher_outputs(
    teacher: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int,
    cache_dir: str | Path,
    batch_size: int = 64,
    meter: Any = None,
    progress: Callable[[str], None] | None = None,
) -> TeacherOutputs:
    """The teacher's logits and pooled states for ``texts``, from the cache or computed once.

    Args:
        teacher: the fine-tuned teacher.
        tokenizer: its tokenizer.
        texts: training texts, in the order the student will see them indexed.
        max_length: truncation length (part of the key: it changes what the teacher sees).
        cache_dir: folder under which ``teacher_logits/`` is kept.
        batch_size: rows per teacher forward pass.
        meter: an open ``advisor.cost.Meter`` that the teacher's inference FLOPs are counted into.
        progress: called with one-line progress messages.
    """
    say = progress or (lambda _msg: None)
    key = cache_key(weights_digest(teacher), texts_digest(texts), max_length)
    path = Path(cache_dir) / "teacher_logits" / f"{key}.safetensors"
    if path.is_file():
        loaded = load_file(str(path))
        if loaded["logits"].shape[0] == len(texts):
            say(f"teacher logits: cache hit {path.name[:12]}... ({len(texts)} rows), the teacher is not run")
            return TeacherOutputs(loaded["logits"], loaded["pooled"], key, path, cache_hit=True)
    say(f"teacher logits: running the teacher over {len(texts)} training texts (once; cached at {path})")
    encoded = encode(tokenizer, texts, max_length)
    logits, pooled = predict(
        teacher, encoded, pad_id_of(tokenizer), batch_size=batch_size, meter=meter, kind="inference", with_pooled=True
    )
    assert pooled is not None  # with_pooled=True
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(
        {"logits": logits.contiguous(), "pooled": pooled.contiguous()},
        str(tmp),
        metadata={"max_length": str(max_length)},
    )
    os.replace(tmp, path)
    return TeacherOutputs(logits, pooled, key, path, cache_hit=False)


def has_head_for(path_or_id: str, label_names: Sequence[str]) -> bool:
    """Whether a checkpoint already classifies into exactly these labels (so needs no fine-tune).

    True when its config names a sequence-classification architecture and its ``id2label`` lists
    ``label_names`` in order. Checkpoints with generic names (``LABEL_0``...) are taken as fitting
    when only the count matches, since nothing better can be known about them.
    """
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path_or_id)
    except (OSError, ValueError):
        return False
    archs = getattr(config, "architectures", None) or []
    if not any("ForSequenceClassification" in a for a in archs):
        return False
    names = [str(config.id2label[i]) for i in sorted(config.id2label)]
    if len(names) != len(label_names):
        return False
    generic = all(n == f"LABEL_{i}" for i, n in enumerate(names))
    return generic or names == [str(n) for n in label_names]
