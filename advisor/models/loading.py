"""Load a pre-trained encoder with a fresh classification head, and count its parameters.

Every model the advisor trains or distils is opened here, so the same safety rules hold
everywhere: the folder is checked first (:func:`advisor.models.sources.check_model_folder`), weights are
read from safetensors (or pickles with ``weights_only=True`` when allowed), a tokenizer that
produces ids past the embedding table is refused, and an unknown id while offline says so.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advisor.errors import ModelError
from advisor.models.sources import check_model_folder, hub_offline, looks_like_path, offline_message

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


# nn.Embedding tables that map ids to vectors; everything else (LayerNorms, relative attention
# buckets, the encoder) counts as non-embedding, as in Kaplan et al. 2020 ("Scaling laws", sec. 2.1)
_EMBEDDING_TABLES = ("word_embeddings", "position_embeddings", "token_type_embeddings")


def load_for_classification(
    path_or_id: str | Path,
    label_names: Sequence[str],
    *,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a pre-trained encoder with a new classification head over ``label_names``, and its tokenizer.

    A head of another size already in the folder (a model fine-tuned on other labels) is replaced.

    Raises:
        ModelError: the folder is unusable (see :func:`check_model_folder`), the tokenizer is missing
            or produces ids past the embedding table, or the id is unknown while offline.
    """
    from transformers import AutoModelForSequenceClassification

    labels = list(label_names)
    if not labels or len(set(labels)) != len(labels):
        raise ValueError(f"label_names must be a non-empty list of distinct labels. Got {labels!r}.")
    return _open(
        path_or_id,
        AutoModelForSequenceClassification,
        allow_pickle,
        trust_remote_code,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        # a head of another size (a model fine-tuned on other labels) is replaced, not an error
        ignore_mismatched_sizes=True,
    )


def load_encoder(
    path_or_id: str | Path, *, allow_pickle: bool = False, trust_remote_code: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a pre-trained encoder without any task head (a frozen-encoder probe's feature extractor).

    The same checks as :func:`load_for_classification`.
    """
    from transformers import AutoModel

    return _open(path_or_id, AutoModel, allow_pickle, trust_remote_code)


def _open(
    path_or_id: str | Path, auto_class: Any, allow_pickle: bool, trust_remote_code: bool, **model_kwargs: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Check the source, then load its tokenizer and ``auto_class`` weights safely."""
    from transformers import AutoTokenizer

    source = str(path_or_id)
    folder = Path(source).expanduser()
    local = folder.is_dir()
    if local:
        check_model_folder(folder, allow_pickle=allow_pickle)
        source = str(folder)
    elif looks_like_path(source):
        raise ModelError(f"The model folder {source} does not exist. Pass a folder written by save_pretrained.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        if not local and hub_offline():
            raise ModelError(offline_message(source)) from None
        raise ModelError(
            f"Could not load a tokenizer from {source} ({_first_line(exc)}). "
            "Copy the tokenizer files saved with the model (tokenizer.json or vocab.txt) into the folder."
        ) from None
    try:
        model = auto_class.from_pretrained(
            source,
            use_safetensors=None if allow_pickle else True,
            weights_only=True,
            trust_remote_code=trust_remote_code,
            **model_kwargs,
        )
    except pickle.UnpicklingError:  # weights_only refused an object that is not a tensor: it may run code
        raise ModelError(
            f"The pickled weights in {source} hold objects other than tensors, which can run code when loaded; "
            "they were refused. Use safetensors weights from a source you trust."
        ) from None
    except (OSError, ValueError) as exc:
        if not local and hub_offline():
            raise ModelError(offline_message(source)) from None
        raise ModelError(f"Could not load the model in {source} ({_first_line(exc)}).") from None
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise ModelError(tokenizer_mismatch(source, len(tokenizer), rows))
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions < tokenizer.model_max_length:
        tokenizer.model_max_length = positions  # longer texts are cut to what the model can embed, not a crash
    return model, tokenizer


def tokenizer_mismatch(source: str, tokens: int, rows: int) -> str:
    return (
        f"The tokenizer of {source} has {tokens} tokens but the model's embedding table has {rows} "
        f"rows, so ids {rows} and above would crash. Use the tokenizer saved with this model."
    )


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(total, non-embedding) parameter counts; shared (tied) tensors are counted once.

    Non-embedding excludes the word, position and token-type embedding tables only.
    """
    import torch

    embedding: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Embedding) and name.rsplit(".", 1)[-1] in _EMBEDDING_TABLES:
            embedding.update(id(p) for p in module.parameters())
    params = list(model.parameters())  # deduplicated by torch
    total = sum(p.numel() for p in params)
    return total, total - sum(p.numel() for p in params if id(p) in embedding)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
