"""Extend a fine-tuned classifier's head to new labels, keeping the weights of the classes it knew."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from advisor.config.settings import Config
from advisor.errors import RunDirError
from advisor.models.loading import load_for_classification
from advisor.training.train import quiet_libraries, save_model_folder


def extend_head(source: Path, old_labels: Sequence[str], new_labels: Sequence[str], dest: Path, config: Config) -> Path:
    """A copy of the model in ``source`` whose head covers ``new_labels``; old classes keep their rows.

    The classifier's last linear layer (out_features = number of labels) gets fresh rows for the new
    labels; the rows of labels it knew are copied by label name, since sorted names may reorder them.
    """
    t = config.train
    kw = {"allow_pickle": t.allow_pickle, "trust_remote_code": t.trust_remote_code}
    with quiet_libraries():
        old, _ = load_for_classification(str(source), old_labels, **kw)
        torch.manual_seed(t.seed)  # the new classes' rows start the same on a rerun
        new, tok = load_for_classification(str(source), new_labels, **kw)
    old_head, new_head = _last_linear(old, len(old_labels)), _last_linear(new, len(new_labels))
    with torch.no_grad():
        for i, label in enumerate(new_labels):
            if label in old_labels:
                j = list(old_labels).index(label)
                new_head.weight[i] = old_head.weight[j]
                if new_head.bias is not None and old_head.bias is not None:
                    new_head.bias[i] = old_head.bias[j]
    save_model_folder(new, tok, dest)
    return dest


def _last_linear(model: Any, outputs: int) -> Any:
    """The classifier's output layer: the last linear layer with one output per label."""
    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == outputs]
    if not heads:
        raise RunDirError(f"The earlier model has no classifier layer with {outputs} outputs; it cannot be extended.")
    return heads[-1]
