# Kept whole: the writer and crash recovery share the file naming (suffixes, temporary names),
# so that recovery's pattern cannot drift from what the writer produces.
"""The store's image files: rendered, written atomically, found again, and cleaned up after a crash.

Layout under the store's root::

    images/<camera>/<YYYY-MM-DD>/<inspected_ns>-<seq>.png          the frame (or .jpg)
    images/<camera>/<YYYY-MM-DD>/<inspected_ns>-<seq>.overlay.jpg  heat overlay + region boxes
    images/<camera>/<YYYY-MM-DD>/<inspected_ns>-<seq>.thumb.jpg    thumbnail of the overlay

The day folder is the UTC date of ``inspected_ns``. Files are written before the row that
names them is committed, and deleted before their row, so a row only points at a missing
file after a crash or a hand-deleted file; ``recover`` clears such paths, and removes files
no row names (crash between the write and the commit). A failed write, or a disk under the
free-space floor, never loses the verdict: the row is stored without image paths, the record
is counted in ``skipped`` and ``alarm`` says why.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from inspector.imaging import draw_regions, heatmap_overlay, thumbnail
from inspector.logs import RateLimitedLog
from inspector.store.db import Database, SpaceReserve
from inspector.store.records import InspectionRecord

logger = logging.getLogger(__name__)

IMAGES_DIR = "images"
THUMB_SIDE = 256
JPEG_QUALITY = 90
NS_PER_DAY = 86_400 * 1_000_000_000
PATH_COLUMNS = ("image_path", "overlay_path", "thumb_path")
HAS_IMAGES = "(image_path IS NOT NULL OR overlay_path IS NOT NULL OR thumb_path IS NOT NULL)"
# Every kind of file the writer produces; recovery's pattern below is built from it.
SUFFIXES = {"overlay_path": ".overlay.jpg", "thumb_path": ".thumb.jpg"}
# The frame is what a refit fits on and a shadow run scores, so by default it is kept as
# the line saw it: PNG (lossless; level 1, the fastest). JPEG q90 is a quarter to a ninth
# of the bytes and a twentieth of the encoding time, but moves a model's scores by about 5%
# (up to a quarter) of the way from a typical part to the threshold (docs/closed-loop.md).
FRAME_FORMATS = {"png": (".png", [cv2.IMWRITE_PNG_COMPRESSION, 1]),
                 "jpeg": (".jpg", [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])}
# Written by earlier versions (or the other frame format); recovery removes them too.
LEGACY_SUFFIXES = (".overlay.png", *(suffix for suffix, _ in FRAME_FORMATS.values()))
TEMP_PREFIX, TEMP_SUFFIX = ".", ".tmp"  # files being written: ``.<name>.<random>.tmp``
_RECOVERABLE = "|".join(re.escape(s) for s in (*SUFFIXES.values(), *LEGACY_SUFFIXES))
_IMAGE_NAME_RE = re.compile(rf"-?\d+--?\d+({_RECOVERABLE})")


def keeps_pass_images(camera: str, seq: int, rate: float) -> bool:
    """Deterministic sampling: the same (camera, seq) always gets the same answer."""
    if rate >= 1.0:
        return True
    bucket = zlib.crc32(f"{camera}\0{int(seq)}".encode()) % 1000
    return bucket < round(rate * 1000)


def keeps_images(record: InspectionRecord, pass_sample_rate: float) -> bool:
    """Whether the store keeps pictures of ``record``: every reject and error with a frame,
    and the sampled share of passes."""
    if record.frame is None:
        return False
    return record.verdict != "pass" or keeps_pass_images(
        record.camera, record.seq, pass_sample_rate
    )


def write_temp(path: Path, data: bytes) -> Path:
    """Write ``data`` to a new temporary file beside ``path`` (not fsynced); returns it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.",
                               suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _fsync(path: Path) -> None:
    """fsync a file or a folder by name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _day(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).strftime("%Y-%m-%d")


def _encode(ext: str, params: list[int], image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {ext} image of shape {image.shape}")
    return buf.tobytes()


def _boxes(regions: Sequence[dict]) -> list[tuple[int, int, int, int]]:
    boxes = []
    for region in regions:
        try:
            box = tuple(int(region[key]) for key in ("x", "y", "w", "h"))
        except (KeyError, TypeError, ValueError):
            continue  # a region without a usable box still goes into regions_json
        if box[2] > 0 and box[3] > 0:
            boxes.append(box)
    return boxes


def _render(frame: np.ndarray, record: InspectionRecord, frame_format: str
            ) -> dict[str, bytes]:
    """Encode the frame, the overlay and its thumbnail; keys are the path columns."""
    heat = record.anomaly_map
    base = frame if heat is None else heatmap_overlay(frame, heat, record.map_low, record.map_high)
    overlay = draw_regions(base, _boxes(record.regions))
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    return {
        "image_path": _encode(*FRAME_FORMATS[frame_format], frame),
        # JPEG, not PNG: a sixteenth of the encoding time and an eighth of the bytes
        # for a picture people look at (docs/benchmarks.md).
        "overlay_path": _encode(".jpg", jpeg, overlay),
        "thumb_path": _encode(".jpg", jpeg, thumbnail(overlay, THUMB_SIDE)),
    }


class ImageFiles:
    """The image files under ``root/images`` and the bookkeeping that keeps them cheap to cap.

    ``lock`` is held by every writer that touches files and the rows naming them (adding,
    retention, recovery), so that readers of the database never wait on image encoding.
    Below ``min_free_bytes`` free on the filesystem no image is written (the verdicts still
    are), and ``reserve`` keeps room for SQLite itself (``SpaceReserve``).
    """

    def __init__(
        self, root: Path, db: Database, reserve: SpaceReserve, min_free_bytes: int,
        frame_format: str = "png",
    ) -> None:
        if min_free_bytes < 0:
            raise ValueError(f"min_free_bytes must be >= 0, got {min_free_bytes}")
        if frame_format not in FRAME_FORMATS:
            raise ValueError(f"frame_format must be one of {sorted(FRAME_FORMATS)}, got "
                             f"{frame_format!r}")
        self.frame_format = frame_format
        self.root = root
        self.folder = root / IMAGES_DIR
        self.alarm: str | None = None  # e.g. "disk full: ..."; None while image writes work
        self.space_low = False  # under the floor, or a write found the disk full
        self.skipped = 0  # records stored without the images they should have kept
        self.reserve = reserve
        self.min_free_bytes = min_free_bytes
        self.lock = threading.Lock()
        # Image bytes as retention counts them: walked once, then kept up to date by this
        # object's own writes and deletes (None: walk again), so retention stays cheap.
        self.known_bytes: int | None = None
        self._db = db
        # Warnings of the store's file work (render, write, delete), at most one a minute each.
        self.warnings = RateLimitedLog(logger, interval_s=60.0)
        self.folder.mkdir(parents=True, exist_ok=True)

    def write_batch(
        self, records: Sequence[InspectionRecord], pass_sample_rate: float
    ) -> list[dict[str, str]]:
        """Write the pictures ``records`` keep with one fsync round; per record, path column
        -> relative path (empty: no pictures).

        Every file is written to a temporary name first, then all are fsynced, renamed and
        their folders fsynced, so that the one commit of the rows that follows never names a
        half-written file. Nothing is kept for a pass outside the sample or a record without
        a frame. Below the free-space floor, or once a write finds the disk full, the rest of
        the batch is stored without pictures (counted in ``skipped``).
        """
        paths: list[dict[str, str]] = [{} for _ in records]
        wanted = [i for i, r in enumerate(records) if keeps_images(r, pass_sample_rate)]
        failure: OSError | None = None
        if not self.check_space():
            self.skipped += len(wanted)
            return paths
        staged: list[tuple[int, list[tuple[str, Path, str]]]] = []
        for n, i in enumerate(wanted):
            encoded = self._render(records[i])
            if encoded is None:
                continue
            try:
                staged.append((i, self._stage(records[i], encoded)))
            except OSError as exc:
                failure = exc
                self.skipped += len(wanted) - n  # this record and the rest of the batch
                break
        written = 0
        folders: set[Path] = set()
        for i, files in staged:
            try:
                for _, tmp, _ in files:
                    _fsync(tmp)
                for _, tmp, rel in files:
                    os.replace(tmp, self.root / rel)
            except OSError as exc:  # ext4 may report a full disk only at fsync
                failure = failure or exc
                self.skipped += 1
                for _, tmp, rel in files:
                    tmp.unlink(missing_ok=True)
                    (self.root / rel).unlink(missing_ok=True)
                continue
            paths[i] = {column: rel for column, _, rel in files}
            written += sum(file_size(self.root / rel) for _, _, rel in files)
            folders.add((self.root / files[0][2]).parent)
        for folder in folders:
            try:
                _fsync(folder)  # the renames themselves
            except OSError as exc:
                failure = failure or exc
        if self.known_bytes is not None:
            self.known_bytes += written
        if failure is not None:
            self._write_failed(failure)
        elif self.alarm is not None and not self.space_low:
            logger.info("image writes work again; clearing alarm %r", self.alarm)
            self.alarm = None
        return paths

    def _render(self, record: InspectionRecord) -> dict[str, bytes] | None:
        assert record.frame is not None
        try:
            return _render(record.frame, record, self.frame_format)
        except (ValueError, cv2.error) as exc:
            self.skipped += 1
            self.warnings.warning(
                "render",
                "cannot render images for %s seq %s (row kept without images): %s",
                record.camera,
                record.seq,
                exc,
            )
            return None

    def _stage(
        self, record: InspectionRecord, encoded: dict[str, bytes]
    ) -> list[tuple[str, Path, str]]:
        """Write one record's files under temporary names: (column, temp file, final path)."""
        folder = f"{IMAGES_DIR}/{record.camera}/{_day(int(record.inspected_ns))}"
        stem = f"{int(record.inspected_ns)}-{int(record.seq)}"
        (self.root / folder).mkdir(parents=True, exist_ok=True)
        files: list[tuple[str, Path, str]] = []
        try:
            for column, data in encoded.items():
                suffix = (FRAME_FORMATS[self.frame_format][0] if column == "image_path"
                          else SUFFIXES[column])
                rel = f"{folder}/{stem}{suffix}"
                files.append((column, write_temp(self.root / rel, data), rel))
        except OSError:
            for _, tmp, _ in files:
                tmp.unlink(missing_ok=True)
            raise
        return files

    def check_space(self) -> bool:
        """Whether images may be written now: free space at or above the floor, not counting
        the room of a released reserve (that is the database's). Also puts the reserve back,
        and clears the disk alarm, once there is room again."""
        try:
            free = shutil.disk_usage(self.root).free
        except OSError:
            return True  # cannot tell: try, and let a failed write say
        if not self.reserve.restore(free, self.min_free_bytes):
            floor = self.min_free_bytes + self.reserve.size
            self._space_alarm(f"disk full: {free} bytes free, under the floor of {floor} "
                              f"(the database's reserve included)")
            return False
        if free < self.min_free_bytes:
            self._space_alarm(f"disk full: {free} bytes free, under the floor of "
                              f"{self.min_free_bytes}")
            return False
        if self.space_low:
            # Rate-limited: a disk that fills again at once (quota, inodes) must not log
            # twice a batch.
            self.warnings.warning("room", "disk has room again (%d bytes free); clearing "
                                  "alarm %r", free, self.alarm)
            self.space_low = False
            self.alarm = None
        return True

    def database_full(self) -> bool:
        """SQLite found the disk full: give it the reserve; True when that freed room."""
        self._space_alarm("disk full: the database could not grow")
        return self.reserve.release()

    def _space_alarm(self, reason: str) -> None:
        if not self.space_low:
            self.warnings.warning("full", "%s; storing verdicts without images until there "
                                  "is room", reason)
        self.space_low = True
        self.alarm = reason

    def _write_failed(self, exc: OSError) -> None:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            self._space_alarm(f"disk full: {exc}")
            return
        self.alarm = f"image write failed: {exc}"
        self.warnings.warning(
            "image-write", "%s; storing verdicts without images until writes work", self.alarm
        )

    def discard(self, written: dict[str, str]) -> None:
        """Delete files that no row will name (their rows were not committed)."""
        for rel in written.values():
            self.absolute(rel).unlink(missing_ok=True)

    def absolute(self, rel: str) -> Path:
        path = self.resolve(rel)
        if path is None:
            raise ValueError(f"image path {rel!r} is not under {IMAGES_DIR}/")
        return path

    def resolve(self, rel: str) -> Path | None:
        """The file a stored path names, or None for one outside root/images."""
        # Paths come from the database; never follow one outside root/images.
        parts = Path(rel).parts
        if not parts or parts[0] != IMAGES_DIR or ".." in parts or Path(rel).is_absolute():
            return None
        return self.root / rel

    def total_bytes(self) -> int:
        """Total size of the files under root/images."""
        total = 0
        stack = [self.folder]
        while stack:
            try:
                entries = list(os.scandir(stack.pop()))
            except OSError:
                continue  # a folder removed meanwhile
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
        return total

    def remove_empty_dirs(self, folder: Path) -> None:
        # Emptied day (and camera) folders go too, so the tree does not grow forever.
        while folder != self.folder and folder.is_relative_to(self.folder):
            try:
                folder.rmdir()
            except OSError:
                return  # not empty, or already gone
            folder = folder.parent

    # --- crash recovery --------------------------------------------------------------------

    def recover(self, min_age_s: float = 0.0) -> dict[str, int]:
        """Clean up after a crash (kill -9, power cut); opening a store runs it.

        Removes temporary files left by interrupted atomic writes and image files that no row
        names (written just before a crash, row never committed), and clears image paths that
        point at missing files; those rows are kept, their verdicts stand. Files younger than
        ``min_age_s`` stay: pass a minute or so when another process may be writing.
        Returns ``{"temp_removed", "orphans_removed", "paths_cleared"}``.
        """
        counts = {"temp_removed": 0, "orphans_removed": 0, "paths_cleared": 0}
        cutoff = time.time() - min_age_s
        with self.lock:
            for folder, _, files in os.walk(self.folder):
                temp, orphans = self._recover_folder(Path(folder), files, cutoff)
                counts["temp_removed"] += temp
                counts["orphans_removed"] += orphans
            counts["paths_cleared"] = self._clear_missing_paths()
            self.known_bytes = None
        if any(counts.values()):
            logger.warning("recovered results store %s: %s", self.root, counts)
        return counts

    def sweep_orphans(self, now_ns: int, min_age_s: float) -> int:
        """Remove leftovers (temporary and unreferenced files) older than ``min_age_s`` from
        the day folders of ``now_ns`` and the day before, where a crash leaves them; for
        retention, which recovers a store another process kept open. Needs no ``lock``:
        files that old are no write in progress."""
        cutoff = time.time() - min_age_s
        removed = 0
        days = {_day(now_ns), _day(max(0, now_ns - NS_PER_DAY))}
        try:
            cameras = [e.path for e in os.scandir(self.folder) if e.is_dir(follow_symlinks=False)]
        except OSError:
            return 0
        for camera in cameras:
            for day in days:
                folder = Path(camera) / day
                try:
                    files = [e.name for e in os.scandir(folder)]
                except OSError:
                    continue  # no such day
                temp, orphans = self._recover_folder(folder, files, cutoff)
                removed += temp + orphans
        if removed:
            self.known_bytes = None
            logger.warning("removed %d leftover image files under %s", removed, self.folder)
        return removed

    def _recover_folder(self, folder: Path, files: list[str], cutoff: float) -> tuple[int, int]:
        temp, images = 0, []
        for name in files:
            path = folder / name
            try:
                info = path.stat(follow_symlinks=False)
            except OSError:
                continue  # removed meanwhile
            old = stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff
            if not old:
                continue
            if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
                path.unlink(missing_ok=True)
                temp += 1
            elif _IMAGE_NAME_RE.fullmatch(name):
                images.append(path)
        # Only images/<camera>/<day>/ holds our image files; leave anything else alone.
        if not images or folder.parent.parent != self.folder:
            return temp, 0
        try:
            day = datetime.strptime(folder.name, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            return temp, 0
        start_ns = int(day.timestamp()) * 1_000_000_000
        rows = self._db.query(
            "SELECT image_path, overlay_path, thumb_path FROM inspections"
            " WHERE camera = ? AND inspected_ns >= ? AND inspected_ns < ?",
            (folder.parent.name, start_ns, start_ns + NS_PER_DAY),
        )
        named = {row[column] for row in rows for column in PATH_COLUMNS}
        orphans = 0
        for path in images:
            if path.relative_to(self.root).as_posix() not in named:
                path.unlink(missing_ok=True)
                orphans += 1
        return temp, orphans

    def _clear_missing_paths(self) -> int:
        cleared, last_id = 0, 0
        while True:
            rows = self._db.query(
                "SELECT id, image_path, overlay_path, thumb_path FROM inspections"
                f" WHERE id > ? AND {HAS_IMAGES} ORDER BY id LIMIT 1000",
                (last_id,),
            )
            if not rows:
                return cleared
            last_id = rows[-1]["id"]
            for row in rows:
                for column in PATH_COLUMNS:
                    rel = row[column]
                    path = None if rel is None else self.resolve(rel)
                    if rel is None or (path is not None and path.is_file()):
                        continue
                    with self._db.transaction() as conn:
                        # Compare the value too: another process may have changed the row.
                        conn.execute(
                            f"UPDATE inspections SET {column} = NULL WHERE id = ? AND {column} = ?",
                            (row["id"], rel),
                        )
                    cleared += 1
