"""Read a dataset source into raw ``datasets`` splits: built-in, file, saved folder or hub id.

The first half of loading (see :mod:`advisor.data.task` for column detection, labels and splitting).
Every failure is a :class:`~advisor.errors.DataError` that names the file and the fix: unsupported
suffixes, empty or header-only files, bytes that are not UTF-8, malformed rows, an unreachable hub.
Files are read into memory with a throwaway cache folder, so a failed read leaves nothing behind.
"""

from __future__ import annotations

import codecs
import contextlib
import difflib
import gzip
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import datasets

from advisor.data.datafiles import FILE_FORMATS, check_path, file_format, looks_like_path
from advisor.errors import DataError
from advisor.offline.builtin_data import BUILTINS, load_builtin


def read_source(source: str, say: Callable[[str], None]) -> tuple[datasets.DatasetDict, str, str]:
    """Return the raw splits, a short name for messages, and a description of the source."""
    if source in BUILTINS:
        info = BUILTINS[source]
        say(f"loading built-in dataset {source!r} ...")
        description = f"built-in {source!r}: {info.description}. Source: {info.provenance}. Licence: {info.licence}."
        return load_builtin(source, say), f"built-in {source!r}", description
    path = Path(source).expanduser()
    if looks_like_path(source):
        kind = "saved dataset" if path.is_dir() else "file"
        return _read_path(path, say), path.name or str(path), f"{kind} {path.resolve()}"
    return _read_hub(source, say), source, f"hub dataset {source!r}"


def _read_path(path: Path, say: Callable[[str], None]) -> datasets.DatasetDict:
    check_path(path)
    if path.is_dir():
        say(f"reading the saved dataset in {path} ...")
        try:
            loaded = datasets.load_from_disk(str(path), keep_in_memory=True)
        except FileNotFoundError as exc:
            raise DataError(
                f"{path} is a folder but not a dataset saved with save_to_disk; pass a data file "
                f"({', '.join(FILE_FORMATS)}) or such a folder."
            ) from exc
        return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})
    suffix, compressed = file_format(path)
    fmt = FILE_FORMATS[suffix]
    if fmt != "parquet":
        _check_utf8(path, compressed)
    kwargs: dict[str, Any] = {}
    if fmt == "csv":
        # utf-8-sig: a byte-order mark (Excel writes one) would otherwise become part of a column name
        kwargs = {"encoding": "utf-8-sig", "delimiter": "\t" if suffix == ".tsv" else ","}
    say(f"reading {path} ...")
    with tempfile.TemporaryDirectory(prefix="greenladder-data-") as cache, _quiet_datasets():
        try:
            loaded = datasets.load_dataset(
                fmt, data_files=str(path), split="train", cache_dir=cache, keep_in_memory=True, **kwargs
            )
        except ValueError as exc:
            if "corresponds to no data" not in str(exc):  # what datasets says for a header-only file
                raise _unreadable(path, suffix, exc) from exc
            loaded = None
        except Exception as exc:  # the parsers raise many types; all mean "this file is malformed"
            raise _unreadable(path, suffix, exc) from exc
    if loaded is None or loaded.num_rows == 0:
        raise DataError(f"{path} has no data rows; pass a file with a header row and at least a few labelled rows.")
    return datasets.DatasetDict({"train": loaded})


def _unreadable(path: Path, suffix: str, exc: Exception) -> DataError:
    # datasets wraps the parser's error in "An error occurred while generating the dataset"; the parser's says what
    cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
    detail = str(cause).strip().splitlines()[-1:] or [type(cause).__name__]
    return DataError(
        f"{path} could not be read as {suffix.lstrip('.').upper()} ({detail[0][:200]}); check that it is valid."
    )


def _check_utf8(path: Path, compressed: bool) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # where the bytes the decoder is looking at start in the file
    opener = gzip.open if compressed else open
    with opener(path, "rb") as fh:
        try:
            read = 0
            for block in iter(lambda: fh.read(1 << 20), b""):
                offset = read - len(decoder.getstate()[0])  # a character may straddle two blocks
                decoder.decode(block)
                read += len(block)
            offset = read - len(decoder.getstate()[0])
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            at = offset + exc.start
            raise DataError(
                f"{path} is not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {at} is not valid); "
                "re-save it as UTF-8, e.g. `iconv -f cp1252 -t utf-8 in.csv > out.csv`."
            ) from exc
        except (OSError, EOFError) as exc:  # a .gz that is not gzip, or truncated
            raise DataError(f"{path} could not be decompressed ({exc}); check that it is a valid .gz file.") from exc


def _read_hub(source: str, say: Callable[[str], None]) -> datasets.DatasetDict:
    close = difflib.get_close_matches(source, list(BUILTINS), n=1)
    hint = f" (did you mean the built-in {close[0]!r}?)" if close else ""
    unreachable = f"{source!r} is not a file or built-in, and the hub is unreachable{hint}; download the data and pass --data path/to/file.csv."
    if any(
        os.environ.get(v, "").upper() in {"1", "ON", "YES", "TRUE"} for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    ):
        raise DataError(unreachable)
    say(f"loading {source!r} from the Hugging Face hub ...")
    try:
        loaded = datasets.load_dataset(source)
    except datasets.exceptions.DatasetNotFoundError as exc:
        raise DataError(
            f"{source!r} is not a file, a built-in ({', '.join(BUILTINS)}) or a dataset on the hub{hint}; check the name."
        ) from exc
    except (ConnectionError, TimeoutError) as exc:
        raise DataError(unreachable) from exc
    except Exception as exc:  # scripts, configs and gated repos fail in many ways; say which
        raise DataError(f"the hub dataset {source!r} could not be loaded ({str(exc)[:200]}).") from exc
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Hide ``datasets``' progress bars while we read (library code does not print), then restore them."""
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
