"""Read-only mappings, all the way down: what the frozen records of :mod:`advisor.types` hold.

A frozen dataclass stops ``run.metrics = {}`` but not ``run.metrics["accuracy"] = 1``; records
therefore keep every mapping as a :class:`FrozenMap` (nested mappings too, lists inside as
tuples), made by :func:`freeze` in their ``__post_init__``, and give plain dicts and lists back
through :func:`thaw` in ``to_dict()``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V", covariant=True)


class FrozenMap(Mapping[K, V]):
    """A read-only mapping whose values are frozen too (see :func:`freeze`).

    Not :class:`types.MappingProxyType`: records cross process boundaries pickled (torch's object
    collectives in a multi-GPU job, :mod:`advisor.distributed`), and a mapping proxy cannot be
    pickled or deep-copied; this can.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[K, V] | None = None) -> None:
        self._data: dict[K, V] = {k: freeze(v) for k, v in (data or {}).items()}

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMap, (self._data,))


def freeze(value: Any) -> Any:
    """``value`` made read-only all the way down: mappings become :class:`FrozenMap`, lists and
    tuples tuples, sets frozensets; anything else (numbers, strings, records) is kept as it is."""
    if isinstance(value, FrozenMap):
        return value  # frozen when it was made
    if isinstance(value, Mapping):
        return FrozenMap(value)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """:func:`freeze` undone, for writing out: mappings become plain dicts, tuples and lists lists,
    frozensets sets (what JSON, YAML and callers that edit their own copy expect)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return {thaw(v) for v in value}
    return value
