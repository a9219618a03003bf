"""Make the student cheaper to serve, and measure what serving it costs.

Dynamic int8 quantisation replaces each ``nn.Linear`` with a version whose weights are int8 and
whose activations are quantised on the fly (no calibration data needed); it targets CPU inference.
Latency has one definition in this project, ``advisor.training.baseline.latency_ms`` (p50/p95 of batch-1
calls, tokenisation included), used here for the float and int8 students and the ONNX export.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advisor.errors import ModelError
from advisor.training.baseline import latency_ms
from advisor.training.inference import predict_labels

#: file of the int8 student's weights, next to the float student's folder
INT8_WEIGHTS = "student_int8.pt"


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` dynamically quantised to int8 (CPU only)."""
    from torch.ao.quantization import quantize_dynamic

    model_copy = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():
        # torch marks torch.ao.quantization as deprecated in favour of torchao; it still works
        warnings.simplefilter("ignore")
        return quantize_dynamic(model_copy, {torch.nn.Linear}, dtype=torch.qint8)


def state_dict_bytes(model: torch.nn.Module) -> int:
    """Bytes of the weights as stored (int8 packed weights count at their packed size)."""
    total = 0
    for value in model.state_dict().values():
        if isinstance(value, torch.Tensor):
            total += value.numel() * value.element_size()
        elif isinstance(value, tuple):  # packed params of quantised linears: (weight, bias)
            total += sum(v.numel() * v.element_size() for v in value if isinstance(v, torch.Tensor))
    return total


def save_int8(model: torch.nn.Module, path: str | Path) -> Path:
    """Save a dynamically quantised model's state dict (tensors only: it reloads with ``weights_only=True``)."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    return path


def load_int8(float_folder: str | Path, path: str | Path) -> torch.nn.Module:
    """Rebuild the int8 student: the float student's architecture, quantised, then the saved int8 weights.

    Args:
        float_folder: the saved float student (config.json; its weights are replaced).
        path: the file written by :func:`save_int8`.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(str(float_folder))
    shell = quantize_int8(AutoModelForSequenceClassification.from_config(config))
    shell.load_state_dict(torch.load(str(path), weights_only=True))
    return shell.eval()


def model_latency(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int, repeats: int) -> dict[str, float]:
    """p50/p95 batch-1 CPU latency of a transformers classifier (``advisor.training.baseline.latency_ms``)."""
    return latency_ms(lambda batch: predict_labels(model, tokenizer, batch, max_length), texts, repeats=repeats)


def export_onnx(model: torch.nn.Module, tokenizer: Any, path: str | Path, *, max_length: int = 128) -> Path:
    """Export a (float) classifier to ONNX with dynamic batch and sequence axes.

    Uses torch's TorchScript-based exporter, which needs no extra package; raises ModelError with
    what to do when this torch build cannot export.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sample = tokenizer(["an example sentence"], truncation=True, max_length=max_length, return_tensors="pt")
    model_cpu = copy.deepcopy(model).cpu().eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model_cpu,
                (sample["input_ids"], sample["attention_mask"]),
                str(path),
                input_names=["input_ids", "attention_mask"],
                output_names=["logits"],
                dynamic_axes={n: {0: "batch", 1: "sequence"} for n in ("input_ids", "attention_mask")}
                | {"logits": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
    except Exception as exc:  # the exporter raises many types; the user needs one message
        raise ModelError(
            f"ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Drop --onnx, or install onnxscript for torch's newer exporter."
        ) from exc
    return path


def onnx_latency(
    path: str | Path, tokenizer: Any, texts: Sequence[str], max_length: int, repeats: int
) -> dict[str, float] | None:
    """Batch-1 latency of the exported model under onnxruntime (None when onnxruntime is not installed)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the same threads as the torch timings
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def predict(batch: Sequence[str]) -> np.ndarray:
        enc = tokenizer(list(batch), truncation=True, max_length=max_length, padding=True, return_tensors="np")
        feeds = {k: enc[k].astype("int64") for k in ("input_ids", "attention_mask")}
        return np.asarray(session.run(None, feeds)[0]).argmax(-1)

    return latency_ms(predict, texts, repeats=repeats)
