"""Compact students from an existing fine-tuned checkpoint, with a no-teacher control run and
measured speed.

``distill(config)`` runs everything; the pieces (student construction, cached teacher logits,
losses, the training loop, compression and latency) are importable on their own. The names below
are loaded on first use, so ``distill.cli`` can check its inputs before torch and transformers load.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "DistillConfig": "distill.config",
    "build_distill_config": "distill.config",
    "distill_models": "distill.pipeline",
    "distill": "distill.run",
    "DistillReport": "distill.summary",
}
__all__ = ["DistillConfig", "DistillReport", "build_distill_config", "distill", "distill_models"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'distill' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
