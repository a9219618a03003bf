"""Make the student cheaper to serve, and measure what serving it costs.

Dynamic int8 quantisation replaces each ``nn.Linear`` with a version whose weights are int8 and
whose activations are quantised on the fly (no calibration data needed); it targets CPU inference.
Latency is measured, not estimated: untimed warm-up calls, then repeated timed calls under
``torch.inference_mode``.
"""

from __future__ import annotations

import copy
import math
import os
import statistics
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from advisor.errors import ModelError
from distill.batching import collate, encode, pad_id_of


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


def folder_bytes(folder: str | Path) -> int:
    """Size on disk of everything in a saved model folder."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def measure_latency(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int,
    repeats: int = 50,
    warmup: int = 5,
    throughput_batch: int = 32,
) -> dict[str, float]:
    """CPU latency at batch 1 (p50/p95) and throughput at ``throughput_batch``.

    Texts are cycled; each batch-1 call sees one real text, padded to nothing. Throughput runs
    ``max(3, repeats // 10)`` batches of ``throughput_batch`` texts padded to their longest.

    Returns:
        ``p50_ms``, ``p95_ms``, ``mean_ms`` (batch 1), ``throughput_per_s`` (texts per second),
        ``threads`` (torch intra-op threads during the measurement), ``load_avg_1min`` (how busy the
        machine was).
    """
    if not texts:
        raise ValueError("measure_latency needs at least one text.")
    model.eval()
    encoded = encode(tokenizer, texts, max_length)
    pad_id = pad_id_of(tokenizer)
    singles = [collate([encoded[i % len(encoded)]], pad_id) for i in range(warmup + repeats)]
    times_ms: list[float] = []
    with torch.inference_mode():
        for i, batch in enumerate(singles):
            start = time.perf_counter()
            model(**batch)
            if i >= warmup:
                times_ms.append((time.perf_counter() - start) * 1000.0)
        n_batches = max(3, repeats // 10)
        big = [
            collate([encoded[(b * throughput_batch + j) % len(encoded)] for j in range(throughput_batch)], pad_id)
            for b in range(n_batches + 1)
        ]
        model(**big[0])  # warm-up at the larger shape
        start = time.perf_counter()
        for batch in big[1:]:
            model(**batch)
        elapsed = time.perf_counter() - start
    times_ms.sort()
    p95_index = min(len(times_ms) - 1, math.ceil(0.95 * len(times_ms)) - 1)
    return {
        "p50_ms": float(statistics.median(times_ms)),
        "p95_ms": float(times_ms[p95_index]),
        "mean_ms": float(statistics.fmean(times_ms)),
        "throughput_per_s": n_batches * throughput_batch / elapsed,
        "threads": float(torch.get_num_threads()),
        # other processes competing for the cores inflate latency; say how busy the machine was
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
    }


def export_onnx(model: torch.nn.Module, tokenizer: Any, path: str | Path, *, max_length: int = 128) -> Path:
    """Export a (float) classifier to ONNX with dynamic batch and sequence axes.

    Uses torch's TorchScript-based exporter, which needs no extra package; raises ModelError with
    what to do when this torch build cannot export.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sample = collate(encode(tokenizer, ["an example sentence"], max_length), pad_id_of(tokenizer))
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
