"""The results store: every verdict in SQLite (WAL), its pictures as files, all under one root.

Layout under ``root``::

    inspections.db                                   results, labels, models, users, audit
    images/<camera>/<YYYY-MM-DD>/<inspected_ns>-<seq>.jpg          the frame (JPEG)
    images/<camera>/<YYYY-MM-DD>/<inspected_ns>-<seq>.overlay.jpg  heat overlay + region boxes
    images/<camera>/<YYYY-MM-DD>/<inspected_ns>-<seq>.thumb.jpg    thumbnail of the overlay

The day folder is the UTC date of ``inspected_ns``. Image files are written (atomically)
before the row that names them is committed, and retention deletes files before rows, so
a row only points at a missing file after a crash or a hand-deleted file; ``recover``
clears such paths and runs at every open that finds no other ``Store`` open on the root.
A failed image write never loses the verdict: the row is stored without image paths and
``Store.alarm`` says why.

Labels are append-only (``labels``); ``inspections.label``/``defect_type`` hold the current
one so that filters stay fast. Labeled samples are never deleted by retention.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import sqlite3
import stat
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np

from inspector.errors import InspectorError
from inspector.files import write_atomic
from inspector.imaging import draw_regions, heatmap_overlay, thumbnail
from inspector.logs import RateLimitedLog

try:
    import fcntl
except ImportError:  # not POSIX: no cross-process guard on recovery
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

DB_FILE = "inspections.db"
LOCK_FILE = "store.lock"  # every open Store holds a shared flock on it
IMAGES_DIR = "images"
VERDICTS = ("pass", "reject", "error")
LABELS = ("good", "defect", "none")  # "none" clears a label (an undo); history keeps it
THUMB_SIDE = 256
JPEG_QUALITY = 90
RETENTION_BATCH = 200
_NS_PER_DAY = 86_400 * 1_000_000_000
_NS_PER_HOUR = 3_600 * 1_000_000_000
_PATH_COLUMNS = ("image_path", "overlay_path", "thumb_path")
_SUFFIXES = {"image_path": ".jpg", "overlay_path": ".overlay.jpg", "thumb_path": ".thumb.jpg"}
_CAMERA_RE = re.compile(r"[A-Za-z0-9_.-]+")
_IMAGE_NAME_RE = re.compile(r"-?\d+--?\d+\.(jpg|overlay\.png|thumb\.jpg)")
_HAS_IMAGES = "(image_path IS NOT NULL OR overlay_path IS NOT NULL OR thumb_path IS NOT NULL)"

_SCHEMA_V1 = """
CREATE TABLE inspections (
    id INTEGER PRIMARY KEY,
    camera TEXT NOT NULL,
    seq INTEGER NOT NULL,
    part_id TEXT,
    captured_ns INTEGER NOT NULL,
    inspected_ns INTEGER NOT NULL,
    verdict TEXT NOT NULL CHECK(verdict IN ('pass','reject','error')),
    score REAL,
    threshold REAL,
    model_sha256 TEXT,
    latency_json TEXT NOT NULL,
    regions_json TEXT NOT NULL,
    error TEXT,
    image_path TEXT,
    overlay_path TEXT,
    thumb_path TEXT,
    label TEXT,
    defect_type TEXT
);
CREATE INDEX inspections_time ON inspections(inspected_ns);
CREATE INDEX inspections_camera_time ON inspections(camera, inspected_ns);
CREATE INDEX inspections_verdict_time ON inspections(verdict, inspected_ns);
CREATE INDEX inspections_label ON inspections(label);
CREATE TABLE labels (
    id INTEGER PRIMARY KEY,
    inspection_id INTEGER NOT NULL REFERENCES inspections(id),
    label TEXT NOT NULL CHECK(label IN ('good','defect')),
    defect_type TEXT,
    note TEXT,
    user TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    previous_label TEXT,
    previous_defect_type TEXT
);
CREATE INDEX labels_inspection ON labels(inspection_id);
CREATE TABLE models (
    sha256 TEXT PRIMARY KEY,
    name TEXT,
    card_json TEXT NOT NULL,
    added_ns INTEGER NOT NULL,
    active_from_ns INTEGER
);
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK(role IN ('operator','qa','admin')),
    password_hash TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    created_ns INTEGER NOT NULL,
    user TEXT,
    action TEXT NOT NULL,
    detail_json TEXT NOT NULL
);
"""

# Step N (1-based) takes the schema from user_version N-1 to N. Append only; never edit a
# released step. A step is SQL (one statement per line end) or a function of the connection.
# v2: a label row may say "none" (the label was cleared, e.g. undone). SQLite cannot
# change a CHECK constraint in place, so the table is rebuilt with its rows.
_SCHEMA_V2 = """
CREATE TABLE labels_v2 (
    id INTEGER PRIMARY KEY,
    inspection_id INTEGER NOT NULL REFERENCES inspections(id),
    label TEXT NOT NULL CHECK(label IN ('good','defect','none')),
    defect_type TEXT,
    note TEXT,
    user TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    previous_label TEXT,
    previous_defect_type TEXT
);
INSERT INTO labels_v2 SELECT * FROM labels;
DROP TABLE labels;
ALTER TABLE labels_v2 RENAME TO labels;
CREATE INDEX labels_inspection ON labels(inspection_id);
"""

# v3: indexes for the UI with a large history: per-camera verdict counts over a time
# range read only the index, and the operator's queue of unreviewed rejects has its own.
_SCHEMA_V3 = """
CREATE INDEX inspections_time_camera_verdict ON inspections(inspected_ns, camera, verdict);
CREATE INDEX inspections_unreviewed ON inspections(inspected_ns)
    WHERE label IS NULL AND verdict IN ('reject', 'error');
"""

MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (
    _SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class InspectionRecord:
    """What the pipeline hands over for one frame."""

    camera: str
    seq: int
    part_id: str | None
    captured_ns: int  # capture timestamp, ns since epoch
    inspected_ns: int  # when the verdict was decided, ns since epoch
    verdict: str  # "pass" | "reject" | "error"
    score: float | None
    threshold: float | None
    model_sha256: str | None
    latency_ms: dict[str, float]  # e.g. {"queue": .., "model": .., "total": ..}
    regions: list[dict]  # e.g. [{"x", "y", "w", "h", "area_px", "area_mm2", "peak"}]
    error: str | None = None
    frame: np.ndarray | None = None  # uint8 BGR (H, W, 3); None: no image kept
    anomaly_map: np.ndarray | None = None  # float32 (H, W) or None
    map_low: float = 0.0  # display range for the heatmap overlay
    map_high: float = 1.0


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


def keeps_pass_images(camera: str, seq: int, rate: float) -> bool:
    """Deterministic sampling: the same (camera, seq) always gets the same answer."""
    if rate >= 1.0:
        return True
    bucket = zlib.crc32(f"{camera}\0{int(seq)}".encode()) % 1000
    return bucket < round(rate * 1000)


def _json_default(value: Any) -> Any:
    # Pipelines hand over numpy scalars and small arrays; store them as plain numbers.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"))


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _check_camera(camera: str) -> None:
    # Camera ids become folder names: nothing that could step outside root/images.
    if (
        not isinstance(camera, str)
        or not _CAMERA_RE.fullmatch(camera)
        or ".." in camera
        or camera == "."
    ):
        raise ValueError(f"camera id {camera!r} is not usable as a folder name")


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


def _statements(script: str) -> Iterator[str]:
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""
    if buffer.strip():
        raise ValueError(f"migration SQL ends in an incomplete statement: {buffer.strip()[:60]}")


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@dataclass(frozen=True)
class SearchFilters:
    """What the review page and the API filter by; every field optional."""

    camera: str | None = None
    verdict: str | None = None
    label: str | None = None  # "good", "defect" or "none" (unlabeled)
    min_score: float | None = None
    max_score: float | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    model: str | None = None  # sha256 prefix
    disagreements: bool = False  # the label contradicts the verdict
    unreviewed_rejects: bool = False  # rejects nobody has labeled yet (the operator queue)
    labeled_only: bool = False
    after_id: int | None = None
    order: str = "newest"  # or "closeness" (to the threshold)

    def sql(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("camera", self.camera), ("verdict", self.verdict)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.label == "none":
            clauses.append("label IS NULL")
        elif self.label is not None:
            clauses.append("label = ?")
            params.append(self.label)
        for clause, value in (("score >= ?", self.min_score), ("score <= ?", self.max_score),
                              ("inspected_ns >= ?", self.since_ns),
                              ("inspected_ns <= ?", self.until_ns), ("id > ?", self.after_id)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if self.model:
            clauses.append("model_sha256 LIKE ?")
            params.append(self.model.replace("%", "").replace("_", "") + "%")
        if self.disagreements:
            clauses.append("((label = 'good' AND verdict != 'pass')"
                           " OR (label = 'defect' AND verdict = 'pass'))")
        if self.labeled_only:
            clauses.append("label IS NOT NULL")
        if self.unreviewed_rejects:  # the same terms as the partial index, so it is used
            clauses.append("label IS NULL AND verdict IN ('reject', 'error')")
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


class Store:
    """SQLite results database plus image files under ``root``; safe to share between threads.

    One connection is shared behind a lock. Writers that touch files (adding, retention,
    recovery) also take a second lock, so that readers never wait on image encoding or writing.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.images = self.root / IMAGES_DIR
        self.db_path = self.root / DB_FILE
        self.alarm: str | None = None  # e.g. "disk full: ..."; None while image writes work
        self._lock = threading.Lock()  # the connection
        self._io_lock = threading.Lock()  # image files and the rows that name them
        self._ratelimited = RateLimitedLog(logger, interval_s=60.0)
        # Image bytes as retention counts them: walked once, then kept up to date by this
        # object's own writes and deletes (None: walk again), so retention stays cheap.
        self._known_bytes: int | None = None
        self._lock_handle: BinaryIO | None = None
        self.images.mkdir(parents=True, exist_ok=True)
        try:
            # Autocommit mode: every transaction below is an explicit BEGIN IMMEDIATE.
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                self.db_path, check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise InspectorError(f"{self.db_path}: cannot open: {exc}") from exc
        try:
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA busy_timeout=5000")
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                logger.warning("%s: journal mode is %s, not WAL", self.db_path, mode)
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            self._open_with_recovery()
        except sqlite3.Error as exc:
            self.close()
            raise InspectorError(f"{self.db_path}: cannot open: {exc}") from exc
        except BaseException:
            self.close()
            raise
        logger.info("results store %s open (schema v%d)", self.root, SCHEMA_VERSION)

    # --- connection and schema -------------------------------------------------------

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

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError(f"{self.db_path}: the store is closed")
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
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

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._connection().execute(sql, params).fetchall()

    def _migrate(self) -> None:
        while True:
            with self._transaction() as conn:
                # Read inside the write transaction: two processes opening a new store at
                # once must not both apply the same step.
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise InspectorError(
                        f"{self.db_path}: schema version {version} is newer than this "
                        f"software ({SCHEMA_VERSION}); upgrade the software or use another root"
                    )
                if version == SCHEMA_VERSION:
                    return
                step = MIGRATIONS[version]
                if callable(step):
                    step(conn)
                else:
                    for statement in _statements(step):
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version + 1}")
            logger.info("%s: schema migrated to version %d", self.db_path, version + 1)

    def close(self) -> None:
        """Close the database; calling it again does nothing."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._lock_handle is not None:
                self._lock_handle.close()  # releases the flock
                self._lock_handle = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing results ---------------------------------------------------------------

    def add_inspections(
        self, records: Sequence[InspectionRecord], pass_sample_rate: float = 1.0
    ) -> list[int]:
        """Write the images of ``records``, then insert all rows in one transaction.

        Passes keep images for a deterministic ``pass_sample_rate`` share of (camera, seq);
        rejects and errors always keep them when a frame is given. An image that cannot be
        written (disk full) or rendered leaves that row without image paths. Returns the row
        ids in the order of ``records``.
        """
        if not 0.0 <= pass_sample_rate <= 1.0:
            raise ValueError(f"pass_sample_rate must be in [0, 1], got {pass_sample_rate}")
        # Refuse a bad batch before anything is written.
        for record in records:
            if record.verdict not in VERDICTS:
                raise ValueError(f"verdict must be one of {VERDICTS}, got {record.verdict!r}")
            _check_camera(record.camera)
            if int(record.inspected_ns) < 0:
                raise ValueError(f"inspected_ns must be >= 0, got {record.inspected_ns}")
        if not records:
            return []
        with self._io_lock:
            paths = [self._write_images(record, pass_sample_rate) for record in records]
            try:
                rows = [self._row(record, p) for record, p in zip(records, paths, strict=True)]
                with self._transaction() as conn:
                    ids = [int(conn.execute(_INSERT, row).lastrowid) for row in rows]
            except BaseException:
                # No row will name these files; do not leave them to fill the disk.
                for written in paths:
                    for rel in written.values():
                        self._abs(rel).unlink(missing_ok=True)
                self._known_bytes = None
                raise
        return ids

    def _write_images(self, record: InspectionRecord, pass_sample_rate: float) -> dict[str, str]:
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
            self._ratelimited.warning(
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
            for rel in written.values():
                self._abs(rel).unlink(missing_ok=True)
            self._set_alarm(exc)
            return {}
        if self._known_bytes is not None:
            self._known_bytes += sum(len(data) for data in encoded.values())
        if self.alarm is not None:
            logger.info("image writes work again; clearing alarm %r", self.alarm)
            self.alarm = None
        return written

    def _set_alarm(self, exc: OSError) -> None:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        self.alarm = f"{'disk full' if full else 'image write failed'}: {exc}"
        self._ratelimited.warning(
            "image-write", "%s; storing verdicts without images until writes work", self.alarm
        )

    @staticmethod
    def _row(record: InspectionRecord, paths: dict[str, str]) -> tuple[Any, ...]:
        return (
            record.camera,
            int(record.seq),
            record.part_id,
            int(record.captured_ns),
            int(record.inspected_ns),
            record.verdict,
            _opt_float(record.score),
            _opt_float(record.threshold),
            record.model_sha256,
            _dumps(record.latency_ms),
            _dumps(record.regions),
            record.error,
            paths.get("image_path"),
            paths.get("overlay_path"),
            paths.get("thumb_path"),
        )

    def _abs(self, rel: str) -> Path:
        path = self._resolve(rel)
        if path is None:
            raise ValueError(f"image path {rel!r} is not under {IMAGES_DIR}/")
        return path

    def _resolve(self, rel: str) -> Path | None:
        # Paths come from the database; never follow one outside root/images.
        parts = Path(rel).parts
        if not parts or parts[0] != IMAGES_DIR or ".." in parts or Path(rel).is_absolute():
            return None
        return self.root / rel

    # --- labels, models, audit ---------------------------------------------------------

    def add_label(
        self,
        inspection_id: int,
        label: str,
        user: str,
        defect_type: str | None = None,
        note: str | None = None,
    ) -> int:
        """Append a label (keeping the one it replaces) and audit it; returns the label id."""
        if label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {label!r}")
        if not isinstance(user, str) or not user:
            raise ValueError("a label needs the name of the user who gave it")
        defect_type = defect_type or None
        if label != "defect" and defect_type is not None:
            raise ValueError(f"only a 'defect' label has a defect type, got {defect_type!r}")
        now = time.time_ns()
        with self._transaction() as conn:
            current = conn.execute(
                "SELECT label, defect_type FROM inspections WHERE id = ?", (inspection_id,)
            ).fetchone()
            if current is None:
                raise KeyError(inspection_id)
            label_id = conn.execute(
                "INSERT INTO labels (inspection_id, label, defect_type, note, user, created_ns,"
                " previous_label, previous_defect_type) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (inspection_id, label, defect_type, note, user, now, *current),
            ).lastrowid
            conn.execute(
                "UPDATE inspections SET label = ?, defect_type = ? WHERE id = ?",
                (None if label == "none" else label, defect_type, inspection_id),
            )
            detail = {
                "inspection_id": inspection_id,
                "label_id": label_id,
                "label": label,
                "defect_type": defect_type,
                "previous_label": current["label"],
                "previous_defect_type": current["defect_type"],
                "note": note,
            }
            conn.execute(_AUDIT, (now, user, "label", _dumps(detail)))
        return int(label_id or 0)

    def label_history(self, inspection_id: int) -> list[dict]:
        """Every label given to one inspection, oldest first."""
        rows = self._query(
            "SELECT * FROM labels WHERE inspection_id = ? ORDER BY id", (inspection_id,)
        )
        return [dict(row) for row in rows]

    def register_model(self, sha256: str, name: str, card_json: str, active: bool = True) -> None:
        """Insert or update a model; ``active`` marks it in use from now."""
        json.loads(card_json)  # a card that is not JSON is a caller's bug: ValueError
        now = time.time_ns()
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO models (sha256, name, card_json, added_ns, active_from_ns)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(sha256) DO UPDATE SET"
                " name = excluded.name, card_json = excluded.card_json,"
                " active_from_ns = COALESCE(excluded.active_from_ns, models.active_from_ns)",
                (sha256, name, card_json, now, now if active else None),
            )

    def audit(self, action: str, detail: dict, user: str | None = None) -> None:
        """Append one audit row."""
        with self._transaction() as conn:
            conn.execute(_AUDIT, (time.time_ns(), user, action, _dumps(detail)))

    # --- reading -----------------------------------------------------------------------

    @staticmethod
    def _inspection(row: sqlite3.Row) -> dict:
        data = dict(row)
        data["latency_ms"] = json.loads(data.pop("latency_json"))
        data["regions"] = json.loads(data.pop("regions_json"))
        return data

    def get(self, inspection_id: int) -> dict | None:
        """One inspection with every column; ``latency_ms`` and ``regions`` parsed from JSON."""
        rows = self._query("SELECT * FROM inspections WHERE id = ?", (inspection_id,))
        return self._inspection(rows[0]) if rows else None

    @staticmethod
    def _filters(camera: str | None, verdict: str | None) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if camera is not None:
            clauses.append("camera = ?")
            params.append(camera)
        if verdict is not None:
            if verdict not in VERDICTS:
                raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
            clauses.append("verdict = ?")
            params.append(verdict)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def recent(
        self, limit: int = 50, camera: str | None = None, verdict: str | None = None
    ) -> list[dict]:
        """The newest inspections first, optionally of one camera and/or verdict."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        where, params = self._filters(camera, verdict)
        rows = self._query(
            f"SELECT * FROM inspections{where} ORDER BY inspected_ns DESC, id DESC LIMIT ?",
            [*params, int(limit)],
        )
        return [self._inspection(row) for row in rows]

    def count(self, *, camera: str | None = None, verdict: str | None = None) -> int:
        """How many inspections match the filters."""
        where, params = self._filters(camera, verdict)
        return int(self._query(f"SELECT COUNT(*) FROM inspections{where}", params)[0][0])

    def search(self, filters: SearchFilters, limit: int = 50, offset: int = 0) -> list[dict]:
        """Inspections matching ``filters``: newest first, or closest to the threshold first."""
        where, params = filters.sql()
        order = ("ABS(score - threshold) ASC, id DESC" if filters.order == "closeness"
                 else "inspected_ns DESC, id DESC")
        rows = self._query(
            f"SELECT * FROM inspections{where} ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, int(limit), int(offset)],
        )
        return [self._inspection(row) for row in rows]

    def search_count(self, filters: SearchFilters) -> int:
        where, params = filters.sql()
        return int(self._query(f"SELECT COUNT(*) FROM inspections{where}", params)[0][0])

    def verdict_counts(self, since_ns: int, after_id: int = 0,
                       upto_id: int | None = None) -> dict[str, dict[str, int]]:
        """Per camera, how many of each verdict since ``since_ns``; rows ``after_id`` <
        id <= ``upto_id`` only, so a caller can keep a running total of what is new."""
        rows = self._query(
            "SELECT camera, verdict, COUNT(*) FROM inspections WHERE inspected_ns >= ?"
            " AND id > ? AND id <= ? GROUP BY camera, verdict",
            (since_ns, after_id, upto_id if upto_id is not None else 2**63 - 1))
        counts: dict[str, dict[str, int]] = {}
        for camera, verdict, n in rows:
            counts.setdefault(camera, dict.fromkeys(VERDICTS, 0))[verdict] = n
        return counts

    def last_id(self) -> int:
        return int(self._query("SELECT COALESCE(MAX(id), 0) FROM inspections")[0][0])

    def timeline(self, since_ns: int, bucket_s: int) -> list[tuple[str, int, str, int]]:
        """``(camera, bucket start in s, verdict, count)`` rows since ``since_ns``."""
        bucket_ns = int(bucket_s * 1e9)
        rows = self._query(
            "SELECT camera, (inspected_ns / ?) * ? / 1000000000, verdict, COUNT(*)"
            " FROM inspections WHERE inspected_ns >= ? GROUP BY 1, 2, 3 ORDER BY 2",
            (bucket_ns, bucket_ns, since_ns))
        return [tuple(r) for r in rows]

    def scores_since(self, since_ns: int, limit: int = 50_000) -> list[tuple[str, str, float,
                                                                          float | None]]:
        """``(camera, verdict, score, total latency ms)`` of the newest inspections."""
        rows = self._query(
            "SELECT camera, verdict, score, json_extract(latency_json, '$.total')"
            " FROM inspections WHERE inspected_ns >= ? AND score IS NOT NULL"
            " ORDER BY inspected_ns DESC LIMIT ?", (since_ns, int(limit)))
        return [tuple(r) for r in rows]

    def active_model(self) -> dict | None:
        rows = self._query("SELECT sha256, name, card_json FROM models"
                           " ORDER BY active_from_ns DESC NULLS LAST LIMIT 1")
        if not rows:
            return None
        card = json.loads(rows[0]["card_json"])
        return {"sha256": rows[0]["sha256"], "name": rows[0]["name"],
                "threshold": card.get("threshold", {}).get("value")}

    def add_user(self, name: str, role: str, password_hash: str) -> None:
        """Create or replace a user (the password hash comes from the web layer)."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO users (name, role, password_hash, created_ns) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET role = excluded.role,"
                " password_hash = excluded.password_hash, disabled = 0",
                (name, role, password_hash, time.time_ns()),
            )
            conn.execute(_AUDIT, (time.time_ns(), None, "user", _dumps({"name": name,
                                                                        "role": role})))

    def get_user(self, name: str) -> dict | None:
        rows = self._query("SELECT * FROM users WHERE name = ?", (name,))
        return dict(rows[0]) if rows else None

    def users(self) -> list[dict]:
        return [dict(r) for r in self._query(
            "SELECT name, role, created_ns, disabled FROM users ORDER BY name")]

    def audit_log(self, limit: int = 200) -> list[dict]:
        rows = self._query("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (int(limit),))
        return [{**dict(r), "detail": json.loads(r["detail_json"])} for r in rows]

    def image_bytes(self) -> int:
        """Total size of the files under root/images."""
        total = 0
        stack = [self.images]
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

    # --- retention -----------------------------------------------------------------------

    def apply_retention(self, policy: RetentionPolicy, now_ns: int | None = None) -> dict[str, int]:
        """Delete old results as ``policy`` says; returns ``{"deleted", "freed_bytes"}``.

        Only unlabeled passes (oldest first) and then, while a size cap is still exceeded,
        unlabeled rejects/errors older than the protection window (oldest first) are ever
        deleted. ``keep_days`` deletes unlabeled passes older than that, with or without
        images; the size caps only delete rows that still have images, since only those free
        space.
        """
        now = time.time_ns() if now_ns is None else int(now_ns)
        passes = "verdict = 'pass' AND label IS NULL"
        protect_from = now - int(policy.protect_recent_rejects_hours * _NS_PER_HOUR)
        old_rejects = (
            f"verdict IN ('reject', 'error') AND label IS NULL AND inspected_ns < {protect_from}"
        )
        deleted = freed = 0
        with self._io_lock:
            if policy.keep_days is not None:
                cutoff = now - int(policy.keep_days * _NS_PER_DAY)
                while True:
                    n, b, _ = self._retention_batch(f"{passes} AND inspected_ns < {cutoff}")
                    deleted, freed = deleted + n, freed + b
                    if n == 0:
                        break
            if policy.max_bytes is not None or policy.max_disk_percent is not None:
                if self._known_bytes is None:
                    self._known_bytes = self.image_bytes()
                for where in (passes, old_rejects):
                    after: tuple[int, int] | None = None
                    while (need := self._bytes_over(policy)) > 0:
                        n, b, after = self._retention_batch(
                            f"{where} AND {_HAS_IMAGES}", need=need, after=after
                        )
                        deleted, freed = deleted + n, freed + b
                        if n == 0:
                            break
                if self._bytes_over(policy) > 0:
                    self._ratelimited.warning(
                        "retention-cap",
                        "retention: still over the storage cap; what is left is labeled "
                        "samples, recent rejects/errors and results without images",
                    )
        if deleted:
            logger.info("retention deleted %d inspections, freed %d bytes", deleted, freed)
            self.audit("retention", {"deleted": deleted, "freed_bytes": freed})
        return {"deleted": deleted, "freed_bytes": freed}

    def _bytes_over(self, policy: RetentionPolicy) -> int:
        """How many bytes must go to meet the caps; <= 0 when within them."""
        need = 0
        if policy.max_bytes is not None and self._known_bytes is not None:
            need = self._known_bytes - policy.max_bytes
        if policy.max_disk_percent is not None:
            usage = shutil.disk_usage(self.root)
            need = max(need, int(usage.used - usage.total * policy.max_disk_percent / 100))
        return need

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
        # One write transaction per batch: nobody can label a row between choosing and
        # deleting it, and no reader sees a half-deleted batch for long.
        with self._transaction() as conn:
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
                for column in _PATH_COLUMNS:
                    path = None if row[column] is None else self._resolve(row[column])
                    if path is None:
                        continue  # no file, or a path we refuse to follow
                    size = _file_size(path)
                    try:
                        path.unlink(missing_ok=True)
                    except OSError as exc:
                        self._ratelimited.warning(
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
            if self._known_bytes is not None:
                self._known_bytes -= freed
            if chosen:
                ids = [row["id"] for row in chosen]
                conn.execute(
                    f"DELETE FROM inspections WHERE id IN ({','.join('?' * len(ids))})"
                    " AND label IS NULL",
                    ids,
                )
        for row in chosen:
            path = None if row["image_path"] is None else self._resolve(row["image_path"])
            if path is not None:
                self._remove_empty_dirs(path.parent)
        last = rows[seen - 1] if seen else None
        return len(chosen), freed, (last["inspected_ns"], last["id"]) if last else after

    def _remove_empty_dirs(self, folder: Path) -> None:
        # Emptied day (and camera) folders go too, so the tree does not grow forever.
        while folder != self.images and folder.is_relative_to(self.images):
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
        with self._io_lock:
            for folder, _, files in os.walk(self.images):
                temp, orphans = self._recover_folder(Path(folder), files, cutoff)
                counts["temp_removed"] += temp
                counts["orphans_removed"] += orphans
            counts["paths_cleared"] = self._clear_missing_paths()
            self._known_bytes = None
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
        if not images or folder.parent.parent != self.images:
            return temp, 0
        try:
            day = datetime.strptime(folder.name, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            return temp, 0
        start_ns = int(day.timestamp()) * 1_000_000_000
        rows = self._query(
            "SELECT image_path, overlay_path, thumb_path FROM inspections"
            " WHERE camera = ? AND inspected_ns >= ? AND inspected_ns < ?",
            (folder.parent.name, start_ns, start_ns + _NS_PER_DAY),
        )
        named = {row[column] for row in rows for column in _PATH_COLUMNS}
        orphans = 0
        for path in images:
            if path.relative_to(self.root).as_posix() not in named:
                path.unlink(missing_ok=True)
                orphans += 1
        return temp, orphans

    def _clear_missing_paths(self) -> int:
        cleared, last_id = 0, 0
        while True:
            rows = self._query(
                "SELECT id, image_path, overlay_path, thumb_path FROM inspections"
                f" WHERE id > ? AND {_HAS_IMAGES} ORDER BY id LIMIT 1000",
                (last_id,),
            )
            if not rows:
                return cleared
            last_id = rows[-1]["id"]
            for row in rows:
                for column in _PATH_COLUMNS:
                    rel = row[column]
                    path = None if rel is None else self._resolve(rel)
                    if rel is None or (path is not None and path.is_file()):
                        continue
                    with self._transaction() as conn:
                        # Compare the value too: another process may have changed the row.
                        conn.execute(
                            f"UPDATE inspections SET {column} = NULL WHERE id = ? AND {column} = ?",
                            (row["id"], rel),
                        )
                    cleared += 1


_INSERT = (
    "INSERT INTO inspections (camera, seq, part_id, captured_ns, inspected_ns, verdict, score,"
    " threshold, model_sha256, latency_json, regions_json, error, image_path, overlay_path,"
    " thumb_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_AUDIT = "INSERT INTO audit (created_ns, user, action, detail_json) VALUES (?, ?, ?, ?)"
