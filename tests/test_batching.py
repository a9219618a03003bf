from __future__ import annotations

import random

import pytest
import torch

from advisor.training.batching import BucketSampler, padding_share


def _lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(5, 128) for _ in range(n)]


@pytest.mark.parametrize("n", [1, 31, 32, 200, 3333])
def test_every_row_once_per_epoch_and_only_the_last_batch_short(n: int) -> None:
    sampler = BucketSampler(_lengths(n), batch_size=32, seed=1)
    order = list(iter(sampler))
    assert sorted(order) == list(range(n))
    sizes = [len(b) for b in sampler.batches(0)]
    assert all(s == 32 for s in sizes[:-1]) and 0 < sizes[-1] <= 32


def test_far_less_padding_than_random_batches_on_a_small_set() -> None:
    lengths = _lengths(400)
    sampler = BucketSampler(lengths, batch_size=32)
    perm = torch.randperm(400, generator=torch.Generator().manual_seed(0)).tolist()
    random_batches = [perm[i : i + 32] for i in range(0, 400, 32)]
    assert padding_share(sampler.batches(0), lengths) < 0.1
    assert padding_share(random_batches, lengths) > 0.3


def test_order_is_reproducible_changes_each_epoch_and_is_not_sorted_by_length() -> None:
    lengths = _lengths(640)
    a, b = BucketSampler(lengths, 32, seed=3), BucketSampler(lengths, 32, seed=3)
    first = list(iter(a))
    assert first == list(iter(b))
    second = list(iter(a))  # the next epoch
    assert sorted(second) == sorted(first) and second != first
    firsts = [lengths[batch[0]] for batch in BucketSampler(lengths, 32, seed=3).batches(0)]
    assert firsts != sorted(firsts) and firsts != sorted(firsts, reverse=True)


def test_trainer_reads_the_precomputed_length_column_the_trainer_strips(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import datasets
    from transformers import BertConfig, BertForSequenceClassification, TrainingArguments

    from advisor.training.batching import BucketTrainer

    model = BertForSequenceClassification(
        BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    )
    ids = [[1] * n for n in (3, 5, 7, 9)]
    marked = [40, 30, 20, 10]  # not len(input_ids): shows which source the sampler read
    ds = datasets.Dataset.from_dict({"input_ids": ids, "label": [0, 1, 0, 1], "length": marked})
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=2, report_to="none", use_cpu=True)
    trainer = BucketTrainer(model=model, args=args, train_dataset=ds)
    stripped = trainer._remove_unused_columns(ds)
    assert "length" not in stripped.column_names
    sampler = trainer._get_train_sampler(stripped)
    assert isinstance(sampler, BucketSampler) and sampler.lengths == marked


def test_after_out_of_memory_the_batch_halves_and_the_effective_batch_stays_exact() -> None:
    from advisor.training.batching import is_out_of_memory, smaller_batch

    assert smaller_batch(32, 1) == (16, 2) and smaller_batch(16, 2) == (8, 4)
    assert smaller_batch(24, 1) == (12, 2) and smaller_batch(7, 1) == (1, 7)
    assert smaller_batch(1, 32) is None  # one row per device already ran out
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
