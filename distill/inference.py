"""Batched forward passes over a tokenised dataset, metered batch by batch.

Shared by the teacher (logits cached once), evaluation, and the accuracy re-measured after
quantisation, so all three count FLOPs and tokens the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from distill.batching import iter_batches, sorted_batches
from distill.losses import mean_pool


def meter_batch(
    meter: Any, config: Any, attention_mask: torch.Tensor, num_labels: int, kind: Literal["train", "eval", "inference"]
) -> None:
    """Add one batch's analytic FLOPs and token counts to ``meter`` (an ``advisor.cost.Meter``).

    Args:
        meter: the open meter, or None to skip accounting.
        config: the model's ``PretrainedConfig`` (layers, width, vocabulary feed the formula).
        attention_mask: ``[B, L]``; its row sums are the real lengths, L the padded length.
        num_labels: size of the classification head.
        kind: "train", "eval" or "inference".
    """
    if meter is None:
        return
    from advisor.flops import batch_flops

    real = [int(n) for n in attention_mask.sum(dim=1).tolist()]
    padded_len = int(attention_mask.shape[1])
    flops, padding_flops = batch_flops(config, padded_len, real, num_labels, kind)
    meter.add_flops(kind, flops, padding_flops)
    meter.add_tokens(sum(real), padded_len * len(real) - sum(real))


@torch.inference_mode()
def predict(
    model: torch.nn.Module,
    encoded: Sequence[Sequence[int]],
    pad_id: int,
    *,
    batch_size: int = 64,
    meter: Any = None,
    kind: Literal["eval", "inference"] = "eval",
    with_pooled: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (and optionally mean-pooled last hidden states) for every row, in input order.

    Args:
        model: a sequence-classification model; put in eval mode for the call.
        encoded: token ids per row (see :func:`distill.batching.encode`).
        pad_id: the tokenizer's padding id.
        batch_size: rows per forward pass; rows are sorted by length to minimise padding.
        meter: an open ``advisor.cost.Meter`` or None.
        kind: the FLOPs bucket to count into ("eval" or "inference").
        with_pooled: also return the pooled final hidden state.

    Returns:
        ``logits`` ``[N, C]`` float32, and ``pooled`` ``[N, H]`` float32 or None.
    """
    was_training = model.training
    model.eval()
    config = getattr(model, "config", None)
    logits_out: torch.Tensor | None = None
    pooled_out: torch.Tensor | None = None
    lengths = [len(r) for r in encoded]
    # quantised models keep packed weights outside parameters(); they run on the CPU
    device = next(iter(model.parameters()), torch.empty(0)).device
    try:
        for idx, batch in iter_batches(encoded, sorted_batches(lengths, batch_size), pad_id):
            batch = {k: v.to(device) for k, v in batch.items()}
            out = model(**batch, output_hidden_states=with_pooled)
            logits = out.logits.float().cpu()
            if logits_out is None:
                logits_out = torch.empty((len(encoded), logits.shape[-1]), dtype=torch.float32)
            logits_out[idx] = logits
            if with_pooled:
                pooled = mean_pool(out.hidden_states[-1], batch["attention_mask"]).float().cpu()
                if pooled_out is None:
                    pooled_out = torch.empty((len(encoded), pooled.shape[-1]), dtype=torch.float32)
                pooled_out[idx] = pooled
            meter_batch(meter, config, batch["attention_mask"], logits.shape[-1], kind)
    finally:
        model.train(was_training)
    if logits_out is None:
        raise ValueError("predict() needs at least one row.")
    return logits_out, pooled_out
