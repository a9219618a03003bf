#!/usr/bin/env python3
"""Set up greenladder in ./.venv and run one thing: `python3 quickstart.py advise` or `python3 quickstart.py test`.

Needs nothing but Python 3.11+. Idempotent: a second call reuses the virtual environment and only
reinstalls when pyproject.toml changed.

torch is installed first, unless .venv already has one, with ``pip install torch==2.13.0`` from
whatever index pip is set up to use. Which build that gives depends on the machine: from PyPI on
Linux x86_64 it is the CUDA build (it pulls NVIDIA's libraries, several GB, and also runs on a CPU);
on macOS and Windows it is the CPU build. To choose, set GREENLADDER_TORCH to the pip arguments you
want, e.g. "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" for the CPU-only build
(a 190 MB wheel), or install your own torch into .venv before the first run.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
STAMP = VENV / ".greenladder-installed"
#: the torch the project is tested with (pip picks the build: see the module docstring)
TORCH = "torch==2.13.0"


def sh(*cmd: str | os.PathLike[str]) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def setup() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script runs before the venv exists
        sys.exit(f"greenladder needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    if not PY.exists():
        print(f"creating virtual environment {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == want:
        return
    has_torch = subprocess.run([str(PY), "-c", "import torch"], capture_output=True).returncode == 0
    if not has_torch:
        torch_args = shlex.split(os.environ.get("GREENLADDER_TORCH", TORCH))
        if "GREENLADDER_TORCH" not in os.environ:
            print(
                f"installing {TORCH} from your package index: from PyPI on Linux that is the CUDA build "
                "(several GB); for the CPU-only build, stop and set GREENLADDER_TORCH="
                f'"{TORCH} --index-url https://download.pytorch.org/whl/cpu"',
                flush=True,
            )
        sh(PY, "-m", "pip", "install", "--quiet", *torch_args)
    sh(PY, "-m", "pip", "install", "--quiet", "-e", ".[dev]")
    STAMP.write_text(want)


def main() -> int:
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what not in ("advise", "test"):
        print("usage: python3 quickstart.py advise [advise flags...] | test [pytest flags...]", file=sys.stderr)
        return 2
    setup()
    env = dict(os.environ)
    if what == "test":
        # tests never touch the hub: a stray call fails fast instead of waiting on the network
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        cmd = [str(PY), "-m", "pytest", *sys.argv[2:]]
    else:
        args = sys.argv[2:] or ["--task", "text-classification"]
        cmd = [str(VENV / "bin" / "advise"), *args]
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
