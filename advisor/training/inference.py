"""Texts in, model inputs and predictions out: tokenising for training and batched inference.

Shared by training (validation predictions), the climb's final test pass, incremental
continuation and distillation (teacher logits, student predictions), so that every model is read
the same way: padded per batch, length-sorted, in ``inference_mode``, results in input order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from advisor.metering.flops import forward_coefficients


def tokenize(dataset: Any, tokenizer: PreTrainedTokenizerBase, max_length: int) -> Any:
    """Tokenise without padding (the collator pads each batch to its own longest text)."""

    def enc(batch: dict[str, list[Any]]) -> dict[str, Any]:
        out = tokenizer(batch["text"], truncation=True, max_length=min(max_length, tokenizer.model_max_length))
        out["length"] = [len(ids) for ids in out["input_ids"]]
        return out

    return dataset.map(enc, batched=True, remove_columns=["text"], desc=None)


def length_sorted_batches(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int, batch_size: int
) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """Batches of ``texts`` with similar token counts, each padded to its own longest text.

    Yields ``(idx, encoding)``: the rows' positions in ``texts`` (``[B]``) and the tokenizer's
    tensors (``input_ids``, ``attention_mask`` ... ``[B, T]``), so results can be put back in input order.
    """
    # similar token counts together, so that each batch is padded to little more than its texts
    # (sorting by characters instead padded the demo's validation split to 48,000 tokens for 31,170
    # real ones; by tokens, 34,304)
    limit = min(max_length, tokenizer.model_max_length)
    counts = (
        [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=limit)["input_ids"]] if texts else []
    )
    order = np.argsort(counts, kind="stable")
    for start in range(0, len(texts), batch_size):
        idx = torch.as_tensor(order[start : start + batch_size])
        enc = tokenizer(
            [texts[i] for i in idx.tolist()], truncation=True, max_length=limit, padding=True, return_tensors="pt"
        )
        yield idx, dict(enc)


def predict_logits(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    batch_size: int = 64,
    *,
    features: Callable[[Any, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits for ``texts``, batched and padded per batch, in ``inference_mode``, in input order.

    Args:
        features: also return ``features(model_output, attention_mask)`` per row (e.g. pooled
            hidden states); the model is then called with ``output_hidden_states=True``.

    Returns:
        ``logits`` ``[N, C]`` float32 on the CPU, and the features ``[N, F]`` or None.
    """
    model.eval()
    device = next(model.parameters()).device
    logits_out: torch.Tensor | None = None
    feats_out: torch.Tensor | None = None
    with torch.inference_mode():
        for idx, enc in length_sorted_batches(tokenizer, texts, max_length, batch_size):
            enc = {k: v.to(device) for k, v in enc.items()}
            out = model(**enc, output_hidden_states=features is not None)
            logits = out.logits.float().cpu()
            if logits_out is None:
                logits_out = torch.empty((len(texts), logits.shape[-1]), dtype=torch.float32)
            logits_out[idx] = logits
            if features is not None:
                f = features(out, enc["attention_mask"]).float().cpu()
                if feats_out is None:
                    feats_out = torch.empty((len(texts), f.shape[-1]), dtype=torch.float32)
                feats_out[idx] = f
    if logits_out is None:
        logits_out = torch.zeros((0, int(getattr(model.config, "num_labels", 0))), dtype=torch.float32)
    return logits_out, feats_out


def predict_labels(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    batch_size: int = 64,
) -> np.ndarray:
    """Predicted label ids for ``texts`` (the argmax of :func:`predict_logits`)."""
    logits, _ = predict_logits(model, tokenizer, texts, max_length, batch_size)
    return logits.argmax(-1).numpy().astype(int)


def forward_flops(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    batch_size: int = 64,
    *,
    length_sorted: bool = True,
) -> float:
    """The forward FLOPs the meter will count for ``texts``, padding included, without running the model.

    Batches as :func:`predict_logits` forms them (``length_sorted``), or in the texts' own order (a
    Trainer's evaluation loop); each row costs the meter's formula at its batch's padded length
    (:func:`advisor.metering.flops.forward_coefficients`). A budget reserves this for a pass it must leave
    room for.
    """
    a, b, c = forward_coefficients(model.config)
    enc = tokenizer(list(texts), truncation=True, max_length=min(max_length, tokenizer.model_max_length))
    lengths = [len(ids) for ids in enc["input_ids"]]
    order = np.argsort([len(t) for t in texts], kind="stable") if length_sorted else np.arange(len(texts))
    total = 0.0
    for start in range(0, len(texts), batch_size):
        rows = order[start : start + batch_size]
        padded = max(lengths[i] for i in rows)
        total += len(rows) * (a * padded + b * padded * padded + c)
    return total
