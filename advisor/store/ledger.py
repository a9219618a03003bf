"""The run directory's embedded store: write-once run records in SQLite, and the directory lock.

Every finished run is written at once, in one transaction, so a crash leaves either the whole
record or nothing. Re-running the same command reads finished runs back instead of repeating
them; a run that failed (it raised: out of memory, a broken file) is tried again, and its new
record replaces the failed one. A second ``advise`` on the same run directory stops with a clear
message (file lock). In a multi-process job (``accelerate launch``) only rank 0 takes the lock and
writes here; the other ranks get a private copy of the ledger (:func:`rank_run_dir`).
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from advisor import distributed
from advisor.errors import RunDirError
from advisor.faults import fault_point
from advisor.runkey import Role
from advisor.types import Cost, RunResult

LEDGER_NAME = "ledger.sqlite"
LOCK_NAME = ".advise.lock"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    rung TEXT NOT NULL,
    status TEXT NOT NULL,
    record TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS running (run_id TEXT PRIMARY KEY, record TEXT NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS lost (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    record TEXT NOT NULL,
    settled REAL NOT NULL
);
"""


@dataclass(frozen=True)
class LostWork:
    """Work a kill interrupted before its run was recorded: the cost checkpointed last, and where."""

    run_id: str
    cost: Cost
    #: the training step of the last checkpoint; None for a run that had finished but was not recorded
    step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "step": self.step, "cost": self.cost.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LostWork:
        return cls(str(d["run_id"]), Cost.from_dict(d["cost"]), d.get("step"))


def _acquire(run_dir: Path) -> FileLock:
    lock = FileLock(str(run_dir / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunDirError(
            f"Another advise process is using {run_dir}. Wait for it to finish, or pass a different --out."
        ) from None
    return lock


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock; a second process gets a RunDirError at once."""
    lock = _acquire(run_dir)
    try:
        yield
    finally:
        lock.release()


def _snapshot(path: Path) -> bytes | None:
    """The ledger file's database as bytes (a consistent copy), or None if there is none yet."""
    if not path.exists():
        return None
    db = sqlite3.connect(path, timeout=30)
    try:
        return db.serialize()
    except sqlite3.DatabaseError:
        return None  # a broken ledger: rank 0 reports it when it opens it
    finally:
        db.close()


def _restore(image: bytes, path: Path) -> None:
    memory = sqlite3.connect(":memory:")
    disk = sqlite3.connect(path)
    try:
        memory.deserialize(image)
        memory.backup(disk)
    finally:
        memory.close()
        disk.close()


@contextmanager
def rank_run_dir(run_dir: Path) -> Iterator[Path]:
    """The folder this process records its runs in, locked for as long as it is used.

    One process alone: ``run_dir`` itself, under :func:`locked`. In a multi-process job rank 0
    does the same, and every other rank gets a private scratch folder holding a copy of rank 0's
    ledger as it stood before this job wrote anything, sent over the process group (no shared file
    system needed). All ranks then read the same runs back on a resume and take the same turns;
    what the other ranks write in their folder is thrown away with it. When rank 0 cannot take the
    lock, every rank raises its RunDirError.
    """
    if distributed.world_size() == 1:
        with locked(run_dir):
            yield run_dir
        return
    if distributed.is_main():
        try:
            lock = _acquire(run_dir)
        except RunDirError as exc:
            distributed.share(exc)
            raise
        try:
            distributed.share(None)
            distributed.share(_snapshot(run_dir / LEDGER_NAME))
            yield run_dir
        finally:
            lock.release()
        return
    error = distributed.share(None)
    if error is not None:
        raise error
    image = distributed.share(None)
    with tempfile.TemporaryDirectory(prefix=f"greenladder-rank{distributed.rank()}-") as tmp:
        if image is not None:
            _restore(image, Path(tmp) / LEDGER_NAME)
        yield Path(tmp)


class Ledger:
    """Finished runs of one run directory, keyed by run id, never overwritten (failed runs excepted)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LEDGER_NAME
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise RunDirError(
                f"The ledger {self.path} cannot be opened ({exc}). Move it away to start afresh, or use another --out."
            ) from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, run_id: str) -> RunResult | None:
        row = self._db.execute("SELECT record FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return RunResult.from_dict(json.loads(row[0])) if row else None

    def finished(self, run_id: str) -> RunResult | None:
        """The run's record unless it failed: a failed run is to be tried again."""
        run = self.get(run_id)
        return None if run is None or run.status == "failed" else run

    def all(self) -> list[RunResult]:
        rows = self._db.execute("SELECT record FROM runs ORDER BY created, rowid").fetchall()
        return [RunResult.from_dict(json.loads(r[0])) for r in rows]

    def finished_of(self, role: Role, step: str) -> list[RunResult]:
        """The records of ``step``'s runs in ``role`` (its trials, its continuations ...) that did not
        fail, in the order they were made."""
        return [r for r in self.all() if r.key.role == role and r.key.step == step and r.status != "failed"]

    def add(self, run: RunResult) -> None:
        """Write one finished run; a run id already present is an error (records are write-once),
        unless its record says it failed, which the new one replaces.

        The run's whole cost is checkpointed first, and the checkpoint is cleared in the record's own
        transaction: a kill between the two leaves the cost to be booked as lost, never counted twice.
        """
        record = json.dumps(run.to_dict(), sort_keys=True)
        if run.cost.wall_s > 0 or run.cost.flops > 0:
            self.checkpoint(run.run_id, run.cost)
        try:
            with self._transaction():
                self._db.execute("DELETE FROM running WHERE run_id = ?", (run.run_id,))
                self._db.execute("DELETE FROM runs WHERE run_id = ? AND status = 'failed'", (run.run_id,))
                self._db.execute(
                    "INSERT INTO runs (run_id, rung, status, record, created) VALUES (?, ?, ?, ?, ?)",
                    (run.run_id, run.candidate.name, run.status, record, time.time()),
                )
                fault_point(f"ledger:{run.run_id}")  # inside the transaction: a kill here must leave no row
        except sqlite3.IntegrityError:
            raise ValueError(f"run {run.run_id!r} is already in the ledger; records are write-once") from None
        except sqlite3.OperationalError as exc:
            raise RunDirError(
                f"Could not write to the ledger {self.path} ({exc}). Free disk space and rerun."
            ) from None

    def checkpoint(self, run_id: str, cost: Cost, step: int | None = None) -> None:
        """Keep ``cost`` as what the unfinished run ``run_id`` has spent so far (the latest one wins).

        :class:`advisor.training.counting.CostCheckpoint` calls it during training; :meth:`add` clears it.
        """
        record = json.dumps(LostWork(run_id, cost, step).to_dict(), sort_keys=True)
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO running (run_id, record, updated) VALUES (?, ?, ?)",
                (run_id, record, time.time()),
            )

    def settle_interrupted(self) -> list[LostWork]:
        """Book every checkpoint left by a process that died as lost to interruption; returns them.

        Call it holding the run directory's lock (no other advise is running, so a checkpoint still
        here belongs to a killed one). The lost records are append-only, like the runs.
        """
        with self._transaction():
            rows = self._db.execute("SELECT run_id, record FROM running ORDER BY updated, rowid").fetchall()
            now = time.time()
            for run_id, record in rows:
                self._db.execute("INSERT INTO lost (run_id, record, settled) VALUES (?, ?, ?)", (run_id, record, now))
            self._db.execute("DELETE FROM running")
        return [LostWork.from_dict(json.loads(r)) for _, r in rows]

    def lost(self) -> list[LostWork]:
        """Every piece of work lost to an interruption in this run directory, oldest first."""
        rows = self._db.execute("SELECT record FROM lost ORDER BY id").fetchall()
        return [LostWork.from_dict(json.loads(r[0])) for r in rows]

    def get_meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
