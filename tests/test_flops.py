"""The analytic FLOPs formulas against torch's own FLOP counter, on randomly initialised encoders."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertForSequenceClassification, DistilBertConfig

from advisor.errors import ModelError
from advisor.metering.flops import batch_flops, encoder_forward_flops, encoder_shape, non_embedding_params

TINY = BertConfig(
    vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, num_labels=3
)
# MiniLM-L6 shape (all-MiniLM-L6-v2 / MiniLM-L6-H384), with a small vocabulary to stay fast
MINILM = BertConfig(
    vocab_size=1000, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536, num_labels=2
)


def _counted_train_step(config: BertConfig, lengths: list[int], padded: int) -> float:
    """FLOPs torch counts for one forward + backward over a padded batch."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    model.train()
    input_ids = torch.randint(1, config.vocab_size, (len(lengths), padded))
    mask = torch.zeros(len(lengths), padded, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    labels = torch.zeros(len(lengths), dtype=torch.long)
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(input_ids=input_ids, attention_mask=mask, labels=labels)
        out.loss.backward()
    return float(counter.get_total_flops())


@pytest.mark.parametrize(("config", "lengths", "padded"), [(TINY, [5, 9, 16], 16), (MINILM, [20, 64], 64)])
def test_training_flops_match_torch_flop_counter_within_10_percent(config, lengths, padded):
    counted = _counted_train_step(config, lengths, padded)
    total, _ = batch_flops(config, padded, lengths, kind="train")
    assert total == pytest.approx(counted, rel=0.10)


def test_padding_flops_are_the_difference_to_unpadded_sequences():
    total, padding = batch_flops(TINY, 16, [5, 16], kind="eval")
    assert total == pytest.approx(2 * encoder_forward_flops(TINY, 16))
    assert padding == pytest.approx(encoder_forward_flops(TINY, 16) - encoder_forward_flops(TINY, 5))
    _, no_padding = batch_flops(TINY, 16, [16, 16], kind="eval")
    assert no_padding == 0


def test_training_costs_three_forward_passes():
    train, train_pad = batch_flops(TINY, 12, [3, 12], kind="train")
    infer, infer_pad = batch_flops(TINY, 12, [3, 12], kind="inference")
    assert train == pytest.approx(3 * infer)
    assert train_pad == pytest.approx(3 * infer_pad)


def test_attention_cost_grows_with_the_square_of_the_length():
    linear_part = encoder_forward_flops(TINY, 2) - encoder_forward_flops(TINY, 1)
    later_step = encoder_forward_flops(TINY, 101) - encoder_forward_flops(TINY, 100)
    assert later_step > linear_part


def test_distilbert_names_are_read_and_match_the_equivalent_bert_shape():
    distil = DistilBertConfig(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37, num_labels=3)
    assert encoder_shape(distil) == encoder_shape(TINY)
    assert encoder_forward_flops(distil, 10) == encoder_forward_flops(TINY, 10)


def test_non_embedding_params_count_layer_matrices_and_head():
    # per layer 4 d^2 + 2 d f, head d^2 + d * labels
    assert non_embedding_params(TINY) == 2 * (4 * 32 * 32 + 2 * 32 * 37) + 32 * 32 + 32 * 3


def test_a_config_that_is_not_an_encoder_is_refused_with_a_hint():
    with pytest.raises(ModelError, match="hidden_size"):
        encoder_forward_flops({"model_type": "gpt-something", "n_embd": 64}, 8)


def test_wrong_kind_and_impossible_lengths_are_refused():
    with pytest.raises(ValueError, match="kind"):
        batch_flops(TINY, 8, [4], kind="backward")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exceed"):
        batch_flops(TINY, 8, [9])
