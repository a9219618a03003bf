"""Writes a reader never sees half done: one file, or a whole folder, moved into place when complete.

Every writer of the run directory, the model cache and the reports uses these: the new content is
written beside its destination under a temporary name, given the permissions of an ordinary new
file (the umask's), and renamed over the destination in one step.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from advisor.faults import fault_point


def current_umask() -> int:
    """The process's umask, read without changing it where the OS says it (Linux), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def as_ordinary_files(folder: Path) -> None:
    """Give ``folder`` and everything in it the permissions of ordinary new files under the umask.

    ``mkdtemp`` makes a folder only its owner can enter, and some writers (safetensors in
    transformers 5) leave ``-rw-------`` files; a model handed to the user should be readable as
    any file they make (``drwxr-xr-x`` / ``-rw-r--r--`` under the usual umask 022).
    """
    mask = current_umask()
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            os.chmod(path, 0o777 & ~mask)
        else:
            os.chmod(path, (0o666 | (path.stat().st_mode & 0o111)) & ~mask)


def atomic_copytree(build: Callable[[Path], None], dest: Path) -> Path:
    """Build a folder with ``build(tmp_dir)`` and move it to ``dest`` only once it is complete.

    The folder and its files get the umask's permissions (:func:`as_ordinary_files`), not the
    owner-only ones of the temporary folder.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    try:
        build(tmp)
        as_ordinary_files(tmp)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def write_text_atomic(path: Path, text: str, *, fault: str | None = None) -> None:
    """Write ``text`` so that ``path`` is either the old file or the complete new one, never half.

    The text goes to a temporary file in the same folder (``.<name>.*.tmp``), synced, then renamed
    over ``path``. The file gets the permissions of an ordinary new file (the umask's), not the
    private ones ``mkstemp`` gives. ``fault`` names a :func:`fault_point` hit while the file is
    half written (crash-safety tests).

    Raises:
        OSError: the folder cannot be written; the temporary file is removed.
    """

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            if fault is not None:
                fault_point(fault)
            fh.flush()
            os.fsync(fh.fileno())

    write_file_atomic(path, write)


def write_file_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Have ``write(tmp)`` write the file at ``tmp`` (any writer: safetensors, YAML, text), then move
    it over ``path``, so that ``path`` is the old file or the complete new one, never half.

    ``tmp`` is a fresh file in the same folder (``.<name>.*.tmp``); the result gets the permissions
    of an ordinary new file (the umask's), not the private ones ``mkstemp`` gives.

    Raises:
        OSError: the folder cannot be written; the temporary file is removed.
    """
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
