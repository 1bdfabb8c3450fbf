"""Retention: how much history to keep, and deleting the oldest unlabeled results to stay there.

Labeled samples are never deleted. Unlabeled passes go first (oldest first); while a size
cap is still exceeded, unlabeled rejects and errors older than a protection window follow.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from inspector.store.accounts import append_audit
from inspector.store.db import Database
from inspector.store.images import HAS_IMAGES, NS_PER_DAY, PATH_COLUMNS, ImageFiles, file_size

logger = logging.getLogger(__name__)

RETENTION_BATCH = 200
# Leftover files younger than this may be another process's write in progress (a Store
# open elsewhere skips crash recovery); older ones are a crash's and retention removes them.
ORPHAN_MIN_AGE_S = 600.0
# The sweep lists and stats a day's files: at the first retention run, then this seldom.
ORPHAN_SWEEP_INTERVAL_S = 3600.0
_NS_PER_HOUR = 3_600 * 1_000_000_000


@dataclass(frozen=True)
class RetentionPolicy:
    """How much history to keep. Labeled samples and recent rejects/errors are always kept."""

    max_bytes: int | None = None  # cap on image bytes under root/images; None: no byte cap
    max_disk_percent: float | None = None  # keep root's filesystem below this use %; None: off
    keep_days: float | None = None  # delete unlabeled passes older than this; None: off
    pass_sample_rate: float = 1.0  # share of passes whose images are kept; rejects/errors: all
    protect_recent_rejects_hours: float = 24.0  # rejects/errors younger are never deleted

    def __post_init__(self) -> None:
        if self.max_bytes is not None and self.max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {self.max_bytes}")
        if self.max_disk_percent is not None and not 0 < self.max_disk_percent <= 100:
            raise ValueError(f"max_disk_percent must be in (0, 100], got {self.max_disk_percent}")
        if self.keep_days is not None and self.keep_days < 0:
            raise ValueError(f"keep_days must be >= 0, got {self.keep_days}")
        if not 0.0 <= self.pass_sample_rate <= 1.0:
            raise ValueError(f"pass_sample_rate must be in [0, 1], got {self.pass_sample_rate}")
        if self.protect_recent_rejects_hours < 0:
            raise ValueError(
                "protect_recent_rejects_hours must be >= 0, "
                f"got {self.protect_recent_rejects_hours}"
            )


class Retention:
    """Applying a ``RetentionPolicy`` (part of ``Store``)."""

    _db: Database
    _files: ImageFiles
    _last_orphan_sweep: float | None

    def apply_retention(self, policy: RetentionPolicy, now_ns: int | None = None) -> dict[str, int]:
        """Delete old results as ``policy`` says; returns ``{"deleted", "freed_bytes",
        "orphans_removed"}``.

        Only unlabeled passes (oldest first) and then, while a size cap is still exceeded,
        unlabeled rejects/errors older than the protection window (oldest first) are ever
        deleted. ``keep_days`` deletes unlabeled passes older than that, with or without
        images; the size caps only delete rows that still have images, since only those free
        space. With a size cap, retention also keeps twice the store's free-space floor free
        (and room to put its disk reserve back). At its first run and then hourly, it removes
        image files no row names (a crash's leftovers, which recovery skips while another
        process has the store open) from today's and yesterday's folders, once older than
        ``ORPHAN_MIN_AGE_S``.
        """
        now = time.time_ns() if now_ns is None else int(now_ns)
        passes = "verdict = 'pass' AND label IS NULL"
        protect_from = now - int(policy.protect_recent_rejects_hours * _NS_PER_HOUR)
        old_rejects = (
            f"verdict IN ('reject', 'error') AND label IS NULL AND inspected_ns < {protect_from}"
        )
        deleted = freed = orphans = 0
        last_sweep = self._last_orphan_sweep
        if last_sweep is None or time.monotonic() - last_sweep >= ORPHAN_SWEEP_INTERVAL_S:
            # Outside the files lock: what it removes is too old to be a write in progress,
            # and the recorder must not wait on a listing of a day's files.
            self._last_orphan_sweep = time.monotonic()
            orphans = self._files.sweep_orphans(now, ORPHAN_MIN_AGE_S)
        with self._files.lock:
            if policy.keep_days is not None:
                cutoff = now - int(policy.keep_days * NS_PER_DAY)
                while True:
                    n, b, _ = self._retention_batch(f"{passes} AND inspected_ns < {cutoff}")
                    deleted, freed = deleted + n, freed + b
                    if n == 0:
                        break
            if policy.max_bytes is not None or policy.max_disk_percent is not None:
                if self._files.known_bytes is None:
                    self._files.known_bytes = self._files.total_bytes()
                for where in (passes, old_rejects):
                    after: tuple[int, int] | None = None
                    while (need := self._bytes_over(policy)) > 0:
                        n, b, after = self._retention_batch(
                            f"{where} AND {HAS_IMAGES}", need=need, after=after
                        )
                        deleted, freed = deleted + n, freed + b
                        if n == 0:
                            break
                if self._bytes_over(policy) > 0:
                    self._files.warnings.warning(
                        "retention-cap",
                        "retention: still over the storage cap; what is left is labeled "
                        "samples, recent rejects/errors and results without images",
                    )
        if deleted:
            logger.info("retention deleted %d inspections, freed %d bytes", deleted, freed)
            with self._db.transaction() as conn:
                append_audit(conn, "retention", {"deleted": deleted, "freed_bytes": freed}, None)
        return {"deleted": deleted, "freed_bytes": freed, "orphans_removed": orphans}

    def _bytes_over(self, policy: RetentionPolicy) -> int:
        """How many bytes must go to meet the caps; <= 0 when within them."""
        need = 0
        if policy.max_bytes is not None and self._files.known_bytes is not None:
            need = self._files.known_bytes - policy.max_bytes
        usage = shutil.disk_usage(self._files.root)
        if policy.max_disk_percent is not None:
            need = max(need, int(usage.used - usage.total * policy.max_disk_percent / 100))
        # Under the floor no image is written at all: make room for new rejects' pictures,
        # twice the floor so that images go on while the next run catches up, and room to
        # put the database's reserve back.
        reserve = self._files.reserve
        target = 2 * self._files.min_free_bytes + (0 if reserve.present else reserve.size)
        return max(need, target - usage.free)

    def _retention_batch(
        self, where: str, need: int | None = None, after: tuple[int, int] | None = None
    ) -> tuple[int, int, tuple[int, int] | None]:
        """Delete up to one batch matching ``where`` (oldest first): files, then rows.

        With ``need``, stops once the files deleted add up to that many bytes. ``after`` is
        the (inspected_ns, id) the previous batch ended on, so skipped rows are not rescanned.
        Returns (rows deleted, bytes freed, the key to continue after).
        """
        params: list[Any] = []
        if after is not None:
            where += " AND inspected_ns >= ? AND (inspected_ns > ? OR id > ?)"
            params = [after[0], after[0], after[1]]
        files = self._files
        # One write transaction per batch: nobody can label a row between choosing and
        # deleting it, and no reader sees a half-deleted batch for long.
        with self._db.transaction() as conn:
            rows = conn.execute(
                f"SELECT id, inspected_ns, image_path, overlay_path, thumb_path FROM inspections"
                f" WHERE {where} ORDER BY inspected_ns, id LIMIT {RETENTION_BATCH}",
                params,
            ).fetchall()
            chosen: list[sqlite3.Row] = []
            freed = seen = 0
            for row in rows:
                seen += 1
                gone, stuck = [], False
                for column in PATH_COLUMNS:
                    path = None if row[column] is None else files.resolve(row[column])
                    if path is None:
                        continue  # no file, or a path we refuse to follow
                    size = file_size(path)
                    try:
                        path.unlink(missing_ok=True)
                    except OSError as exc:
                        self._files.warnings.warning(
                            "retention-unlink", "retention cannot delete %s: %s", path, exc
                        )
                        stuck = True
                        continue
                    freed += size
                    gone.append(column)
                if stuck:
                    # Keep the row (its file is still there) but not paths to deleted files.
                    if gone:
                        nulls = ", ".join(f"{column} = NULL" for column in gone)
                        conn.execute(f"UPDATE inspections SET {nulls} WHERE id = ?", (row["id"],))
                    continue
                chosen.append(row)
                if need is not None and freed >= need:
                    break
            if files.known_bytes is not None:
                files.known_bytes -= freed
            if chosen:
                ids = [row["id"] for row in chosen]
                conn.execute(
                    f"DELETE FROM inspections WHERE id IN ({','.join('?' * len(ids))})"
                    " AND label IS NULL",
                    ids,
                )
        for row in chosen:
            path = None if row["image_path"] is None else files.resolve(row["image_path"])
            if path is not None:
                files.remove_empty_dirs(path.parent)
        last = rows[seen - 1] if seen else None
        return len(chosen), freed, (last["inspected_ns"], last["id"]) if last else after
