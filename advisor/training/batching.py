"""The shape of batches: length buckets for training, length order for evaluation, smaller on OOM.

Padding is compute spent on nothing, so every batch is padded only to its own longest text and
batches are made of texts of similar length.

Training (:class:`BucketSampler`): length-bucketed batches, still in a random order.

Hugging Face's ``group_by_length`` sorts by length inside mega-batches of
``min(rows // (4 x batch), 50)`` batches, so on the small training sets this tool often sees
(a few hundred rows) it groups three or four batches at a time and much of every batch is still
padding. Here each epoch shuffles the rows, sorts them by length inside buckets of up to 50
batches (the whole set when it is smaller), cuts the buckets into batches and shuffles the
batches. Neighbouring batches are no longer ordered by length, and the one short batch (when the
row count is not a multiple of the batch size) comes last so every other batch stays whole.

Evaluation (:func:`sort_by_length`): the order does not matter, so the validation split is simply
sorted by length, with the permutation kept to put predictions back in the split's order.

Out of memory (:func:`is_out_of_memory`, :func:`smaller_batch`): the same trial is retried with
half the rows per device and twice the gradient accumulation, so the effective batch (and with
it the optimisation) stays the same.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from accelerate.utils.memory import should_reduce_batch_size
from transformers import Trainer


class BucketSampler(torch.utils.data.Sampler[int]):
    """Row indices in an order whose consecutive ``batch_size`` slices have similar lengths.

    Args:
        lengths: token count of each row.
        batch_size: rows per batch (the DataLoader's, times gradient accumulation).
        seed: the order of epoch ``e`` depends only on ``seed`` and ``e``.
        bucket_batches: rows are sorted by length within buckets of this many batches.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, bucket_batches: int = 50) -> None:
        if batch_size < 1 or bucket_batches < 1:
            raise ValueError("batch_size and bucket_batches must be at least 1")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.bucket_batches = bucket_batches
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self, epoch: int) -> list[list[int]]:
        """The batches of ``epoch``, in training order."""
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.lengths), generator=gen).tolist()
        span = self.bucket_batches * self.batch_size  # a multiple of batch_size: only the last bucket is short
        full: list[list[int]] = []
        short: list[list[int]] = []
        for start in range(0, len(order), span):
            bucket = sorted(order[start : start + span], key=self.lengths.__getitem__)
            for i in range(0, len(bucket), self.batch_size):
                batch = bucket[i : i + self.batch_size]
                (full if len(batch) == self.batch_size else short).append(batch)
        shuffled = [full[j] for j in torch.randperm(len(full), generator=gen).tolist()]
        return shuffled + short

    def __iter__(self) -> Iterator[int]:
        batches = self.batches(self.epoch)
        self.epoch += 1  # a DataLoader that never calls set_epoch still gets a new order each epoch
        return iter([i for batch in batches for i in batch])


class BucketTrainer(Trainer):
    """A Trainer whose training batches come from :class:`BucketSampler`."""

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler[int] | None:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if dataset is None or not hasattr(dataset, "column_names"):
            return super()._get_train_sampler(train_dataset)
        # the Trainer strips columns the model does not take (``length`` among them) before it asks
        # for a sampler; the dataset it was given still has them, row for row
        full = self.train_dataset
        if "length" in getattr(full, "column_names", ()) and getattr(full, "num_rows", None) == getattr(
            dataset, "num_rows", -1
        ):
            lengths = full["length"]  # type: ignore[index]
        else:
            lengths = [len(x) for x in dataset["input_ids"]]
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return BucketSampler(lengths, batch, seed=self.args.seed)


def padding_share(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> float:
    """Share of the padded positions of ``batches`` (each padded to its longest row) that are padding."""
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    real = sum(lengths[i] for b in batches for i in b)
    return 1 - real / padded if padded else 0.0


def sort_by_length(dataset: Any) -> tuple[Any, np.ndarray]:
    """``dataset`` (with a ``length`` column) sorted by length, and ``order``: row ``i`` of it is row ``order[i]``."""
    order = np.argsort(np.asarray(dataset["length"]), kind="stable")
    return dataset.select(order.tolist()), order


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says the device or host ran out of memory (worth retrying at a smaller batch).

    accelerate's test covers CUDA, XPU, MPS and CPU allocator messages; a Python ``MemoryError``
    (the host) and torch's ``OutOfMemoryError`` with any message count too.
    """
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, Exception) and should_reduce_batch_size(exc)


def smaller_batch(per_device: int, accumulation: int) -> tuple[int, int] | None:
    """The next (rows per device, accumulation steps) after an OOM, with the same effective batch.

    The rows per device become the largest divisor of the effective batch that is at most half of
    them, so the product stays exactly the same (32 x 1 -> 16 x 2 -> 8 x 4; 24 x 1 -> 12 x 2; a
    prime such as 7 x 1 -> 1 x 7). None when a single row per device already ran out of memory.
    """
    effective = per_device * accumulation
    for rows in range(per_device // 2, 0, -1):
        if effective % rows == 0:
            return rows, effective // rows
    return None


def release_memory() -> None:
    """Give back what a failed attempt held before the next one allocates (host and device)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (200 characters at most), for a record."""
    return (str(exc).splitlines() or [""])[0][:200]
