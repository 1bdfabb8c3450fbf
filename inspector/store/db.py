"""The store's one SQLite connection: WAL mode, shared behind a lock, explicit write transactions.

Every part of the store (inspections, labels, accounts, models, retention, recovery)
reads and writes through one ``Database``, so that all of them see one consistent
history and a write never waits on another connection of the same process.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import InspectorError
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
            self._conn.execute("PRAGMA synchronous=NORMAL")
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
