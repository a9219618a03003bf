"""Layer YAML files, CLI flags and ``--set`` overrides into one typed, checked dataclass.

The machinery behind :func:`advisor.config.settings.build_config` and :func:`distill.config.build_config`:
files are read with ``yaml.safe_load``, later layers win key by key, and :func:`build_dataclass`
collects every unknown key (with the closest valid one), wrong type and refused value, so the
caller raises once with all of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from advisor.errors import ConfigError


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``safe_load``; raise ConfigError naming the file on any problem."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"Config file {p} is a directory. Pass a YAML file, e.g. configs/demo.yaml.")
    if not p.is_file():
        raise ConfigError(f"Config file {p} does not exist. Pass a YAML file, e.g. configs/demo.yaml.")
    try:
        loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"Config file {p} is not valid YAML ({first}). Fix the syntax and retry.") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"Config file {p} must hold a mapping of sections, not a {type(loaded).__name__}.")
    return loaded


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=c`` into (["a", "b"], value); the value is parsed as YAML (1e-4, true, [1, 2])."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"The --set value must look like section.key=value. Got {text!r} instead.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` laid over ``base``: nested mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is Any:
        return True
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        (arg,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_type_ok(v, arg) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, hint)


def _accepts_float(hint: Any) -> bool:
    if hint is float:
        return True
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and float in typing.get_args(hint)


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def build_dataclass(cls: type, values: Mapping[str, Any], prefix: str, problems: list[str]) -> Any:
    """Build config dataclass ``cls`` from a nested mapping, appending every problem to ``problems``.

    Unknown keys (with the closest valid one), wrong types and values the class refuses are all
    collected; the caller raises once. Shared by ``advise`` and ``distill`` configurations.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" Did you mean {prefix}{close[0]}?" if close else f" Valid keys: {', '.join(names)}."
            problems.append(f"Unknown config key {dotted}.{hint}")
            continue
        hint_type = hints[key]
        if isinstance(value, str) and _accepts_float(hint_type):
            # YAML 1.1 reads "3e-4" (no dot) as a string; a float field takes it as the number it is
            with contextlib.suppress(ValueError):
                value = float(value)
        if dataclasses.is_dataclass(hint_type):
            if not isinstance(value, Mapping):
                problems.append(f"The config key {dotted} must be a mapping of settings. Got {value!r} instead.")
                continue
            kwargs[key] = build_dataclass(hint_type, value, f"{dotted}.", problems)  # type: ignore[arg-type]
        elif not _type_ok(value, hint_type):
            problems.append(f"The config key {dotted} must be {_type_name(hint_type)}. Got {value!r} instead.")
        else:
            if _accepts_float(hint_type) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        problems.append(f"{prefix.rstrip('.') or 'config'}: {exc}")
        return cls()


def merge_sources(
    files: Iterable[str | Path] = (),
    overrides: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One nested mapping from YAML files (in order) < ``extra`` (CLI flags) < ``section.key=value`` overrides."""
    merged: dict[str, Any] = {}
    for f in files:
        merged = deep_merge(merged, read_yaml(f))
    if extra:
        merged = deep_merge(merged, extra)
    for text in overrides:
        path, value = parse_override(text)
        node: dict[str, Any] = {}
        cursor = node
        for part in path[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[path[-1]] = value
        merged = deep_merge(merged, node)
    return merged
