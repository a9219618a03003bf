"""Length-bucketed training batches: little padding, batches still in a random order.

Hugging Face's ``group_by_length`` sorts by length inside mega-batches of
``min(rows // (4 x batch), 50)`` batches, so on the small training sets this tool often sees
(a few hundred rows) it groups three or four batches at a time and much of every batch is still
padding. Here each epoch shuffles the rows, sorts them by length inside buckets of up to 50
batches (the whole set when it is smaller), cuts the buckets into batches and shuffles the
batches. Neighbouring batches are no longer ordered by length, and the one short batch (when the
row count is not a multiple of the batch size) comes last so every other batch stays whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
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
