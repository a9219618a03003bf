"""Which data sources ``advise`` can read, checked before any heavy library is imported.

A typo in ``--data`` should fail in a second, not after the ~10 s that importing torch,
transformers and datasets takes: :func:`check_source` looks at the path alone (it exists, it can be
read, its suffix is a supported format, it is not empty). :mod:`advisor.data.readers` runs the same
checks before it reads, so the messages are the same wherever they come from.
"""

from __future__ import annotations

import os
from pathlib import Path

from advisor.errors import DataError
from advisor.offline.builtin_data import BUILTINS

#: file suffix -> ``datasets`` packaged builder (a trailing ``.gz`` is allowed on each)
FILE_FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def looks_like_path(source: str) -> bool:
    """Whether ``source`` names a file or folder (not a built-in or hub id)."""
    path = Path(source).expanduser()
    return path.exists() or source.startswith(("/", ".", "~")) or bool(path.suffix) or "\\" in source


def file_format(path: Path) -> tuple[str, bool]:
    """The data suffix of ``path`` (``.csv`` ...) and whether it is gzipped.

    Raises:
        DataError: the suffix is not a supported format.
    """
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    compressed = suffixes[-1:] == [".gz"]
    suffix = suffixes[0] if compressed and len(suffixes) == 2 else suffixes[-1] if suffixes else ""
    if suffix not in FILE_FORMATS or (compressed and suffix == ".parquet"):
        shown = "".join(suffixes[-2:] if compressed else suffixes[-1:]) or "(none)"
        raise DataError(
            f"{path}: unsupported file type {shown}; save the data as CSV, TSV, JSON, JSONL or Parquet "
            "(a .gz on the text formats is fine)."
        )
    return suffix, compressed


def check_path(path: Path) -> None:
    """Refuse a data path that cannot be read: missing, unreadable, an unsupported or empty file.

    A folder is only checked for existence and access here; whether it holds a ``save_to_disk``
    dataset is for the reader to find out.

    Raises:
        DataError: naming the path and what to do.
    """
    if not path.exists():
        raise DataError(
            f"{path}: no such file or folder. Check the path, or use a built-in dataset ({', '.join(BUILTINS)})."
        )
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            raise DataError(
                f"{path}: the folder cannot be read (permission denied). Make it readable, e.g. chmod u+rx."
            )
        return
    file_format(path)
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: the file cannot be read (permission denied). Make it readable, e.g. chmod u+r.")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty; pass a file with a header row and at least a few labelled rows.")


def check_source(source: str) -> None:
    """:func:`check_path` for a ``data.source`` that names a file or folder; built-ins and hub ids pass.

    Raises:
        DataError: see :func:`check_path`.
    """
    if source not in BUILTINS and looks_like_path(source):
        check_path(Path(source).expanduser())
