"""The output folder's ledger (``advisor.ledger``): finished runs are read back, new ones written once.

A distillation's runs (teacher, controls, distilled students, int8 student) are records in
``<out>/ledger.sqlite`` with their weights beside them, and the phases that are not runs (teacher
logits, latency) are kept as its metadata, so the same command run again finishes from the ledger.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from advisor.errors import RunDirError
from advisor.ledger import Ledger
from advisor.types import RunResult
from distill.config import DistillConfig


def fingerprint(config: DistillConfig) -> str:
    """What must not change for an output folder's ledger to be read back: everything but where it goes."""
    d = config.to_dict()
    for key in ("out", "cache_dir", "compress", "metering"):
        d.pop(key, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Runs:
    """The ledger when there is one: a finished record is read back, a new one written at once."""

    def __init__(self, ledger: Ledger | None, say: Callable[[str], None]) -> None:
        self.ledger, self.say = ledger, say

    def get(self, run_id: str, folder: Path | None = None) -> RunResult | None:
        run = self.ledger.finished(run_id) if self.ledger is not None else None
        if run is not None and (folder is None or folder.exists()):
            self.say(f"{run_id}: read back from the ledger (not run again)")
            return run
        return None

    def put(self, run: RunResult) -> RunResult:
        if self.ledger is not None:
            self.ledger.add(run)
        return run

    def meta(self, key: str) -> Any:
        return self.ledger.get_meta(key) if self.ledger is not None else None

    def set_meta(self, key: str, value: Any) -> None:
        if self.ledger is not None:
            self.ledger.set_meta(key, value)


def open_ledger(out: Path, config: DistillConfig) -> Ledger:
    """The output folder's ledger; refuses one written with other settings (its runs would not apply)."""
    out.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(out)
    fp = fingerprint(config)
    recorded = ledger.get_meta("fingerprint")
    if recorded is not None and recorded != fp:
        ledger.close()
        raise RunDirError(
            f"{out} holds a distillation made with other settings or data. Pass a new --out, or rerun with the original settings."
        )
    ledger.set_meta("fingerprint", fp)
    return ledger
