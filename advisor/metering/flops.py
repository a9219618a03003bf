"""Analytic FLOPs of BERT-shaped encoders, from the model's config and the tokens it processed.

The count follows Kaplan et al. 2020, "Scaling Laws for Neural Language Models" (arXiv:2001.08361,
Table 1): a forward pass costs ``C_forward = 2N + 2 * n_layer * n_ctx * d_attn`` FLOPs per token,
where N is the number of non-embedding parameters (the weights of the matrix multiplies), and a
training step costs three forward passes (the backward pass is about twice the forward: one
product for the input gradients, one for the weight gradients), i.e. ``6 N D`` for D tokens.

Two refinements, because classification batches are short and padded:

* the context term is counted per *sequence* (its cost grows with the square of its length), and
  for both attention products (scores ``Q K^T`` and the weighted sum ``A V``, as Hoffmann et al.
  2022, arXiv:2203.15556, Appendix F, do), where Kaplan's table counts the scores only;
* the classification head (pooler + classifier) runs once per sequence, on the first token only.

Embedding lookups, layer norms, softmax and activations are not matrix multiplies and are left
out, as in both papers; ``torch.utils.flop_counter.FlopCounterMode`` agrees (tests/test_flops.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from advisor.errors import ModelError

FlopsKind = Literal["train", "eval", "inference"]

#: forward passes' worth of FLOPs per processed token: training = forward + backward (~2x forward)
PASSES: Mapping[str, int] = {"train": 3, "eval": 1, "inference": 1}

# config attribute names across BERT/MiniLM/MPNet/RoBERTa (first) and DistilBERT (second)
_LAYERS = ("num_hidden_layers", "n_layers")
_HIDDEN = ("hidden_size", "dim")
_INTERMEDIATE = ("intermediate_size", "hidden_dim")


@dataclass(frozen=True)
class EncoderShape:
    """The three numbers of an encoder that its FLOPs depend on."""

    layers: int
    hidden: int
    intermediate: int

    @property
    def layer_params(self) -> int:
        """Matrix-multiply weights of one layer: Q, K, V and output (4 d^2) + FFN in and out (2 d f)."""
        return 4 * self.hidden**2 + 2 * self.hidden * self.intermediate


def _read(config: Any, names: tuple[str, ...]) -> int | None:
    for name in names:
        value = config.get(name) if isinstance(config, Mapping) else getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def encoder_shape(config: Any) -> EncoderShape:
    """Read layers, hidden size and FFN size from a transformers config (or a plain mapping).

    Raises:
        ModelError: the config does not describe a BERT-shaped encoder.
    """
    layers, hidden, intermediate = _read(config, _LAYERS), _read(config, _HIDDEN), _read(config, _INTERMEDIATE)
    if layers is None or hidden is None or intermediate is None:
        model_type = config.get("model_type") if isinstance(config, Mapping) else getattr(config, "model_type", None)
        raise ModelError(
            f"Cannot count FLOPs for a {model_type or 'model'} config: it needs num_hidden_layers/n_layers, "
            "hidden_size/dim and intermediate_size/hidden_dim. Use a BERT-, MiniLM-, MPNet- or DistilBERT-shaped encoder."
        )
    return EncoderShape(layers, hidden, intermediate)


def _num_labels(config: Any, num_labels: int | None) -> int:
    if num_labels is not None:
        return num_labels
    found = config.get("num_labels") if isinstance(config, Mapping) else getattr(config, "num_labels", None)
    return int(found) if found else 2


def non_embedding_params(config: Any, num_labels: int | None = None) -> int:
    """N of Kaplan et al.: the encoder layers' matrix weights plus the pooler and classifier.

    Biases and layer norms are left out (they are not matrix multiplies).
    """
    shape = encoder_shape(config)
    head = shape.hidden**2 + shape.hidden * _num_labels(config, num_labels)
    return shape.layers * shape.layer_params + head


def forward_coefficients(config: Any, num_labels: int | None = None) -> tuple[float, float, float]:
    """(a, b, c) with forward FLOPs of one sequence of length s = a*s + b*s^2 + c.

    ``a = 2 * n_layer * N_layer`` (Kaplan's 2N per token), ``b = 2 * 2 * n_layer * d`` (scores and
    values, each 2 * s^2 * d per layer), ``c = 2 * (d^2 + d * num_labels)`` (head on one token).
    Being a polynomial in s, the FLOPs of many sequences follow from sum(s) and sum(s^2) alone.
    """
    shape = encoder_shape(config)
    a = 2.0 * shape.layers * shape.layer_params
    b = 4.0 * shape.layers * shape.hidden
    c = 2.0 * (shape.hidden**2 + shape.hidden * _num_labels(config, num_labels))
    return a, b, c


def encoder_forward_flops(config: Any, seq_len: int, num_labels: int | None = None) -> float:
    """FLOPs of one forward pass over one sequence of ``seq_len`` positions (padding included)."""
    if seq_len < 0:
        raise ValueError(f"seq_len must be non-negative. Got {seq_len} instead.")
    a, b, c = forward_coefficients(config, num_labels)
    return a * seq_len + b * seq_len**2 + c


def batch_flops(
    config: Any,
    lengths_padded: int,
    real_lengths: Sequence[int],
    num_labels: int | None = None,
    kind: FlopsKind = "train",
) -> tuple[float, float]:
    """FLOPs of one padded batch and the share of them spent on padding.

    Args:
        config: the model's transformers config.
        lengths_padded: the length every row was padded to (the batch's sequence dimension).
        real_lengths: the unpadded length of each row (the row sums of the attention mask).
        num_labels: classifier outputs; read from the config when None.
        kind: "train" counts forward + backward (3x forward), "eval"/"inference" the forward only.

    Returns:
        (total FLOPs computed at the padded length, padding FLOPs = total minus what the real
        lengths alone would have cost).
    """
    if kind not in PASSES:
        raise ValueError(f"kind must be one of {tuple(PASSES)}. Got {kind!r} instead.")
    if any(n > lengths_padded for n in real_lengths):
        raise ValueError(f"real_lengths must not exceed lengths_padded={lengths_padded}. Got {list(real_lengths)}.")
    passes = PASSES[kind]
    total = passes * len(real_lengths) * encoder_forward_flops(config, lengths_padded, num_labels)
    real = passes * sum(encoder_forward_flops(config, n, num_labels) for n in real_lengths)
    return total, total - real
