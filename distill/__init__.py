"""Compact students from an existing fine-tuned checkpoint, with a no-teacher control run and
measured speed.

``distill(config)`` runs everything; the pieces (student construction, cached teacher logits,
losses, the training loop, compression and latency) are importable on their own.
"""

from distill.config import DistillConfig, build_distill_config
from distill.pipeline import distill_models
from distill.run import distill
from distill.summary import DistillReport

__all__ = ["DistillConfig", "DistillReport", "build_distill_config", "distill", "distill_models"]
