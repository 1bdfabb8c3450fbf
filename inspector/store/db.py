"""The store's one SQLite connection: WAL mode, shared behind a lock, explicit write transactions.

Every part of the store (inspections, labels, accounts, models, retention, recovery)
reads and writes through one ``Database``, so that all of them see one consistent
history and a write never waits on another connection of the same process.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import InspectorError
from inspector.logs import RateLimitedLog
from inspector.store.schema import MIGRATIONS, SCHEMA_VERSION, apply_step

logger = logging.getLogger(__name__)


@contextmanager
def closing_on_failure(path: Path, close: Callable[[], None]) -> Iterator[None]:
    """While opening the store at ``path``: on any failure ``close`` what is open, and report
    SQLite's errors as one ``InspectorError`` that names the file."""
    try:
        yield
    except sqlite3.Error as exc:
        close()
        raise InspectorError(f"{path}: cannot open: {exc}") from exc
    except BaseException:
        close()
        raise


class Database:
    """An open, migrated results database; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            # Autocommit mode: every transaction below is an explicit BEGIN IMMEDIATE.
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise InspectorError(f"{path}: cannot open: {exc}") from exc
        with closing_on_failure(path, self.close):
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA busy_timeout=5000")
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                logger.warning("%s: journal mode is %s, not WAL", path, mode)
            # FULL: a commit is on disk when it returns (one WAL fsync per transaction), so a
            # verdict the recorder committed survives a power cut, not only a kill -9. The
            # recorder commits a whole batch per transaction, so this costs one fsync a batch.
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError(f"{self.path}: the store is closed")
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with self._lock:
            conn = self._connection()
            # IMMEDIATE takes the write lock up front: no deadlock upgrading a read later.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._connection().execute(sql, params).fetchall()

    def checkpoint(self) -> None:
        """Copy the WAL into the database, so that the next commit starts the WAL over and
        reuses its file's space instead of growing it (disk full). PASSIVE: it never waits
        on readers in other processes; with one of them in the WAL it just does less."""
        try:
            with self._lock:
                self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            logger.warning("%s: WAL checkpoint failed: %s", self.path, exc)

    def _migrate(self) -> None:
        while True:
            with self.transaction() as conn:
                # Read inside the write transaction: two processes opening a new store at
                # once must not both apply the same step.
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise InspectorError(
                        f"{self.path}: schema version {version} is newer than this "
                        f"software ({SCHEMA_VERSION}); upgrade the software or use another root"
                    )
                if version == SCHEMA_VERSION:
                    return
                apply_step(conn, MIGRATIONS[version])
                conn.execute(f"PRAGMA user_version = {version + 1}")
            logger.info("%s: schema migrated to version %d", self.path, version + 1)

    def close(self) -> None:
        """Close the connection; calling it again does nothing."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the filesystem (or quota) is full: SQLite's or the OS's error."""
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or (
            "disk is full" in str(exc))
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class SpaceReserve:
    """A pre-allocated file that is deleted to give SQLite room when the disk fills.

    With the disk full, SQLite cannot grow its WAL and every commit fails, so verdicts would
    be lost with their images. Deleting this file frees ``size`` bytes for the database
    alone: images are already skipped below the store's free-space floor, so nothing else
    of ours takes that room. It is allocated again once the disk has room to spare.
    """

    def __init__(self, path: Path, size: int) -> None:
        if size < 0:
            raise ValueError(f"reserve size must be >= 0, got {size}")
        self.path = path
        self.size = size
        self._warnings = RateLimitedLog(logger, interval_s=60.0)  # tried again every batch

    @property
    def present(self) -> bool:
        return self.size == 0 or self.path.is_file()

    def release(self) -> bool:
        """Delete the reserve; True when that freed room (it was there)."""
        if self.size == 0:
            return False
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        logger.warning("disk full: released the %d-byte reserve %s so SQLite can write",
                       self.size, self.path)
        return True

    def restore(self, free_bytes: int, floor: int) -> bool:
        """Allocate the reserve again if missing and it leaves ``floor`` bytes free;
        True when it is in place afterwards."""
        if self.present:
            return True
        if free_bytes - self.size < floor:
            return False
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")  # one per process
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _allocate(fd, self.size)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            self._warnings.warning("reserve", "cannot allocate the %d-byte reserve %s: %s",
                                   self.size, self.path, exc)
            return False
        logger.info("allocated the %d-byte disk reserve %s", self.size, self.path)
        return True


def _allocate(fd: int, size: int) -> None:
    # Really allocated blocks (not a sparse file): deleting it must free that much.
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except (AttributeError, OSError) as exc:
        if isinstance(exc, OSError) and is_disk_full(exc):
            raise
    chunk = b"\0" * (1 << 20)
    for start in range(0, size, len(chunk)):
        os.write(fd, chunk[: size - start])


def _json_default(value: Any) -> Any:
    # Pipelines hand over numpy scalars and small arrays; store them as plain numbers.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> str:
    """Compact JSON for a column, numpy values as plain numbers."""
    return json.dumps(value, default=_json_default, separators=(",", ":"))
