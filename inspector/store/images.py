"""The store's image files: rendered, written atomically, found again, and cleaned up after a crash.

Layout under the store's root::

    images/<camera>/<YYYY-MM-DD>/<inspected_ns>-<seq>.jpg          the frame (JPEG)
    images/<camera>/<YYYY-MM-DD>/<inspected_ns>-<seq>.overlay.jpg  heat overlay + region boxes
    images/<camera>/<YYYY-MM-DD>/<inspected_ns>-<seq>.thumb.jpg    thumbnail of the overlay

The day folder is the UTC date of ``inspected_ns``. Files are written before the row that
names them is committed, and deleted before their row, so a row only points at a missing
file after a crash or a hand-deleted file; ``recover`` clears such paths. A failed write
never loses the verdict: the row is stored without image paths and ``alarm`` says why.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import threading
import time
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from inspector.files import write_atomic
from inspector.imaging import draw_regions, heatmap_overlay, thumbnail
from inspector.logs import RateLimitedLog
from inspector.store.db import Database
from inspector.store.records import InspectionRecord

logger = logging.getLogger(__name__)

IMAGES_DIR = "images"
THUMB_SIDE = 256
JPEG_QUALITY = 90
NS_PER_DAY = 86_400 * 1_000_000_000
PATH_COLUMNS = ("image_path", "overlay_path", "thumb_path")
HAS_IMAGES = "(image_path IS NOT NULL OR overlay_path IS NOT NULL OR thumb_path IS NOT NULL)"
_SUFFIXES = {"image_path": ".jpg", "overlay_path": ".overlay.jpg", "thumb_path": ".thumb.jpg"}
_CAMERA_RE = re.compile(r"[A-Za-z0-9_.-]+")
# Names recovery may delete: every suffix written above, and the PNG overlays of earlier
# versions; built from _SUFFIXES so that a new kind of file cannot be missed.
_RECOVERABLE = "|".join(re.escape(s) for s in (*_SUFFIXES.values(), ".overlay.png"))
_IMAGE_NAME_RE = re.compile(rf"-?\d+--?\d+({_RECOVERABLE})")


def keeps_pass_images(camera: str, seq: int, rate: float) -> bool:
    """Deterministic sampling: the same (camera, seq) always gets the same answer."""
    if rate >= 1.0:
        return True
    bucket = zlib.crc32(f"{camera}\0{int(seq)}".encode()) % 1000
    return bucket < round(rate * 1000)


def check_camera(camera: str) -> None:
    """Camera ids become folder names: nothing that could step outside root/images."""
    if (
        not isinstance(camera, str)
        or not _CAMERA_RE.fullmatch(camera)
        or ".." in camera
        or camera == "."
    ):
        raise ValueError(f"camera id {camera!r} is not usable as a folder name")


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _day(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).strftime("%Y-%m-%d")


def _encode(ext: str, image: np.ndarray, params: list[int]) -> bytes:
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


def _render(frame: np.ndarray, record: InspectionRecord) -> dict[str, bytes]:
    """Encode the frame, the overlay and its thumbnail; keys are the path columns."""
    heat = record.anomaly_map
    base = frame if heat is None else heatmap_overlay(frame, heat, record.map_low, record.map_high)
    overlay = draw_regions(base, _boxes(record.regions))
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    return {
        "image_path": _encode(".jpg", frame, jpeg),
        # JPEG, not PNG: a sixteenth of the encoding time and an eighth of the bytes
        # for a picture people look at (docs/benchmarks.md).
        "overlay_path": _encode(".jpg", overlay, jpeg),
        "thumb_path": _encode(".jpg", thumbnail(overlay, THUMB_SIDE), jpeg),
    }


class ImageFiles:
    """The image files under ``root/images`` and the bookkeeping that keeps them cheap to cap.

    ``lock`` is held by every writer that touches files and the rows naming them (adding,
    retention, recovery), so that readers of the database never wait on image encoding.
    """

    def __init__(self, root: Path, db: Database) -> None:
        self.root = root
        self.folder = root / IMAGES_DIR
        self.alarm: str | None = None  # e.g. "disk full: ..."; None while image writes work
        self.lock = threading.Lock()
        # Image bytes as retention counts them: walked once, then kept up to date by this
        # object's own writes and deletes (None: walk again), so retention stays cheap.
        self.known_bytes: int | None = None
        self._db = db
        # Warnings of the store's file work (render, write, delete), at most one a minute each.
        self.warnings = RateLimitedLog(logger, interval_s=60.0)
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, record: InspectionRecord, pass_sample_rate: float) -> dict[str, str]:
        """Render and write the pictures ``record`` keeps; returns path column -> relative path.

        Nothing is kept for a pass outside the sample or a record without a frame; an image
        that cannot be rendered or written (disk full) leaves the result without pictures.
        """
        frame = record.frame
        if frame is None:
            return {}
        if record.verdict == "pass" and not keeps_pass_images(
            record.camera, record.seq, pass_sample_rate
        ):
            return {}
        try:
            encoded = _render(frame, record)
        except (ValueError, cv2.error) as exc:
            self.warnings.warning(
                "render",
                "cannot render images for %s seq %s (row kept without images): %s",
                record.camera,
                record.seq,
                exc,
            )
            return {}
        folder = f"{IMAGES_DIR}/{record.camera}/{_day(int(record.inspected_ns))}"
        stem = f"{int(record.inspected_ns)}-{int(record.seq)}"
        written: dict[str, str] = {}
        try:
            (self.root / folder).mkdir(parents=True, exist_ok=True)
            for column, data in encoded.items():
                rel = f"{folder}/{stem}{_SUFFIXES[column]}"
                write_atomic(self.root / rel, data)
                written[column] = rel
        except OSError as exc:
            self.discard(written)
            self._set_alarm(exc)
            return {}
        if self.known_bytes is not None:
            self.known_bytes += sum(len(data) for data in encoded.values())
        if self.alarm is not None:
            logger.info("image writes work again; clearing alarm %r", self.alarm)
            self.alarm = None
        return written

    def discard(self, written: dict[str, str]) -> None:
        """Delete files that no row will name (their rows were not committed)."""
        for rel in written.values():
            self.absolute(rel).unlink(missing_ok=True)

    def _set_alarm(self, exc: OSError) -> None:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        self.alarm = f"{'disk full' if full else 'image write failed'}: {exc}"
        self.warnings.warning(
            "image-write", "%s; storing verdicts without images until writes work", self.alarm
        )

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
            if name.startswith(".") and name.endswith(".tmp"):
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
