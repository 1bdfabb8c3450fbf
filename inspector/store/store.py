"""``Store``: the results database and its image files under one root, opened as one object.

Layout under ``root``::

    inspections.db      results, labels, models, users, audit (SQLite, WAL)
    images/             the pictures of each kept result (``inspector.store.images``)
    store.lock          every open Store holds a shared flock on it
    disk-reserve        room kept for SQLite, deleted when the disk fills (``SpaceReserve``)

Each concern lives in its own module and is one base of ``Store``: ``inspections``
(writing and querying results), ``labels`` (append-only history), ``accounts`` (users,
audit), ``models`` (the models seen), ``retention`` (what history to keep), ``alarms``
(the alarm history). They share
one ``Database`` (``db``) and one ``ImageFiles`` (``images``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import BinaryIO

from inspector.store.accounts import Accounts
from inspector.store.alarms import AlarmLog
from inspector.store.db import Database, SpaceReserve, closing_on_failure
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
RESERVE_FILE = "disk-reserve"
# Below this much free space no image is written (verdicts still are). Room for a few
# minutes of images while retention, run at once when space is low, catches up.
DEFAULT_MIN_FREE_BYTES = 64 * 2**20
# What SQLite may need once the disk is full: a WAL at its checkpoint size (about 4 MiB)
# plus the database's growth by tens of thousands of verdict rows.
DEFAULT_RESERVE_BYTES = 16 * 2**20


class Store(Inspections, LabelHistory, Accounts, ModelRegistry, Retention, AlarmLog):
    """SQLite results database plus image files under ``root``; safe to share between threads.

    One connection is shared behind a lock. Writers that touch files (adding, retention,
    recovery) also take the image files' lock, so that readers never wait on image encoding
    or writing. Opening runs crash recovery unless another ``Store`` has the root open.
    """

    def __init__(
        self,
        root: str | Path,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
        reserve_bytes: int = DEFAULT_RESERVE_BYTES,
        frame_format: str = "png",
    ) -> None:
        self.root = Path(root)
        self.db_path = self.root / DB_FILE
        self._lock_handle: BinaryIO | None = None
        self._last_orphan_sweep: float | None = None  # retention's sweep of crash leftovers
        self.root.mkdir(parents=True, exist_ok=True)
        self._db = Database(self.db_path)
        with closing_on_failure(self.db_path, self.close):
            reserve = SpaceReserve(self.root / RESERVE_FILE, reserve_bytes)
            self._files = ImageFiles(self.root, self._db, reserve, min_free_bytes, frame_format)
            self._open_with_recovery()
            self._files.check_space()  # allocates the reserve, or raises the alarm
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
        """Why images are not being written (``"disk full: ..."``, ``"image write failed:
        ..."``); None while they are. Cleared once there is room and writes work again."""
        return self._files.alarm

    @property
    def space_low(self) -> bool:
        """Free space is under the floor, or the disk was found full: run retention now."""
        return self._files.space_low

    @property
    def images_skipped(self) -> int:
        """Records stored without the images they should have kept (disk full, failed write)."""
        return self._files.skipped

    def image_bytes(self) -> int:
        """Total size of the files under root/images."""
        return self._files.total_bytes()

    def recover(self, min_age_s: float = 0.0) -> dict[str, int]:
        """Clean up after a crash; see ``ImageFiles.recover``. Also removes a reserve file
        whose allocation a crash interrupted."""
        counts = self._files.recover(min_age_s)
        cutoff = time.time() - min_age_s
        for leftover in self.root.glob(f".{RESERVE_FILE}.*.tmp"):
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink(missing_ok=True)
                counts["temp_removed"] += 1
        return counts

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
