"""Tokenise once, then batch by length so little compute goes to padding.

Texts are tokenised a single time without padding; each batch is padded only to its own longest
row. Training batches are grouped by length inside shuffled windows (random enough for SGD, and on
short sentences it removes most of the ~50% padding that plain shuffling leaves).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import torch

#: a training window holds this many batches; sorting within it groups lengths while keeping
#: the batch order random
_WINDOW_BATCHES = 50


def encode(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text, truncated to ``max_length``, special tokens included, no padding."""
    out = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    return [list(ids) for ids in out["input_ids"]]


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Shuffled batches of row indices whose rows have similar lengths.

    Indices are shuffled with ``seed``, cut into windows of ``50 * batch_size``, each window is
    sorted by length and chunked, and the batches are shuffled again.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * _WINDOW_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches for inference: all rows sorted by length (the caller restores the order)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(rows: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad token-id rows to the longest one.

    Returns:
        ``input_ids`` and ``attention_mask``, both ``[B, L]`` with L the longest row.
    """
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def iter_batches(
    encoded: Sequence[Sequence[int]], batches: Sequence[Sequence[int]], pad_id: int
) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """Yield (row indices, padded inputs) for each batch of indices."""
    for idx in batches:
        yield list(idx), collate([encoded[i] for i in idx], pad_id)


def pad_id_of(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id
    return int(pad) if pad is not None else 0
