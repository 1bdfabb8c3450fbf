"""``Store``: the results database and its image files under one root, opened as one object.

Layout under ``root``::

    inspections.db      results, labels, models, users, audit (SQLite, WAL)
    images/             the pictures of each kept result (``inspector.store.images``)
    store.lock          every open Store holds a shared flock on it

Each concern lives in its own module and is one base of ``Store``: ``inspections``
(writing and querying results), ``labels`` (append-only history), ``accounts`` (users,
audit), ``models`` (the models seen), ``retention`` (what history to keep). They share
one ``Database`` (``db``) and one ``ImageFiles`` (``images``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import BinaryIO

from inspector.store.accounts import Accounts
from inspector.store.db import Database, closing_on_failure
from inspector.store.images import ImageFiles
from inspector.store.inspections import Inspections
from inspector.store.labels import LabelHistory
from inspector.store.models import ModelRegistry
from inspector.store.retention import Retention
from inspector.store.schema import SCHEMA_VERSION

try:
    import fcntl
except ImportError:  # not POSIX: no cross-process guard on recovery
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

DB_FILE = "inspections.db"
LOCK_FILE = "store.lock"


class Store(Inspections, LabelHistory, Accounts, ModelRegistry, Retention):
    """SQLite results database plus image files under ``root``; safe to share between threads.

    One connection is shared behind a lock. Writers that touch files (adding, retention,
    recovery) also take the image files' lock, so that readers never wait on image encoding
    or writing. Opening runs crash recovery unless another ``Store`` has the root open.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.db_path = self.root / DB_FILE
        self._lock_handle: BinaryIO | None = None
        self.root.mkdir(parents=True, exist_ok=True)
        self._db = Database(self.db_path)
        with closing_on_failure(self.db_path, self.close):
            self._files = ImageFiles(self.root, self._db)
            self._open_with_recovery()
        logger.info("results store %s open (schema v%d)", self.root, SCHEMA_VERSION)

    def _open_with_recovery(self) -> None:
        """Recover unless another Store (any process) has this root open, then share it.

        Recovery deletes temporary and unreferenced image files; with another writer alive
        those could be its writes in progress, so only the first one to open recovers.
        """
        if fcntl is None:
            self.recover()
            return
        self._lock_handle = open(self.root / LOCK_FILE, "ab")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(self._lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("%s is open elsewhere; skipping crash recovery", self.root)
        else:
            self.recover()
        fcntl.flock(self._lock_handle, fcntl.LOCK_SH)

    @property
    def images(self) -> Path:
        """The folder that holds the image files (``root/images``)."""
        return self._files.folder

    @property
    def alarm(self) -> str | None:
        """Why image writes fail (e.g. ``"disk full: ..."``); None while they work."""
        return self._files.alarm

    def image_bytes(self) -> int:
        """Total size of the files under root/images."""
        return self._files.total_bytes()

    def recover(self, min_age_s: float = 0.0) -> dict[str, int]:
        """Clean up after a crash; see ``ImageFiles.recover``."""
        return self._files.recover(min_age_s)

    def close(self) -> None:
        """Close the database; calling it again does nothing."""
        self._db.close()
        if self._lock_handle is not None:
            self._lock_handle.close()  # releases the flock
            self._lock_handle = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
