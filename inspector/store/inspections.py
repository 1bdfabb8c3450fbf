"""Inspection results: written in batches with their pictures, and found again by filters."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from inspector.store.db import Database, dumps, is_disk_full
from inspector.store.images import ImageFiles
from inspector.store.records import VERDICTS, InspectionRecord, check_record

_INSERT = (
    "INSERT INTO inspections (camera, seq, part_id, captured_ns, inspected_ns, verdict, score,"
    " threshold, model_sha256, latency_json, regions_json, error, image_path, overlay_path,"
    " thumb_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


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


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


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
        dumps(record.latency_ms),
        dumps(record.regions),
        record.error,
        paths.get("image_path"),
        paths.get("overlay_path"),
        paths.get("thumb_path"),
    )


def _inspection(row: sqlite3.Row) -> dict:
    data = dict(row)
    data["latency_ms"] = json.loads(data.pop("latency_json"))
    data["regions"] = json.loads(data.pop("regions_json"))
    return data


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


class Inspections:
    """Writing and reading inspection rows (part of ``Store``)."""

    _db: Database
    _files: ImageFiles

    def add_inspections(
        self, records: Sequence[InspectionRecord], pass_sample_rate: float = 1.0
    ) -> list[int]:
        """Write the images of ``records`` (one fsync round), then insert all rows in one
        transaction (one commit): a batch costs about as many syncs as one record.

        Passes keep images for a deterministic ``pass_sample_rate`` share of (camera, seq);
        rejects and errors always keep them when a frame is given. An image that cannot be
        written (disk full, free space under the floor) or rendered leaves that row without
        image paths. When SQLite finds the disk full, the store's reserve file is released,
        the WAL checkpointed, and the rows are inserted again. Returns the row ids in the
        order of ``records``.
        """
        if not 0.0 <= pass_sample_rate <= 1.0:
            raise ValueError(f"pass_sample_rate must be in [0, 1], got {pass_sample_rate}")
        # Refuse a bad batch before anything is written.
        for record in records:
            check_record(record)
        if not records:
            return []
        with self._files.lock:
            paths = self._files.write_batch(records, pass_sample_rate)
            try:
                rows = [_row(record, p) for record, p in zip(records, paths, strict=True)]
                try:
                    ids = self._insert(rows)
                except sqlite3.Error as exc:
                    # A full disk: SQLite cannot grow its WAL. Free the reserve for it and
                    # start the WAL over (its file's space is reused), then try once more.
                    if not is_disk_full(exc):
                        raise
                    self._files.database_full()
                    self._db.checkpoint()
                    ids = self._insert(rows)
                if self._files.space_low:
                    # While the disk is full, keep the WAL at one batch's size: the reserve
                    # then only pays for the rows themselves, not for a growing WAL.
                    self._db.checkpoint()
            except BaseException:
                # No row will name these files; do not leave them to fill the disk.
                for written in paths:
                    self._files.discard(written)
                self._files.known_bytes = None
                raise
        return ids

    def _insert(self, rows: list[tuple[Any, ...]]) -> list[int]:
        with self._db.transaction() as conn:  # one commit, one WAL fsync, for the batch
            return [int(conn.execute(_INSERT, row).lastrowid) for row in rows]

    def get(self, inspection_id: int) -> dict | None:
        """One inspection with every column; ``latency_ms`` and ``regions`` parsed from JSON."""
        rows = self._db.query("SELECT * FROM inspections WHERE id = ?", (inspection_id,))
        return _inspection(rows[0]) if rows else None

    def recent(
        self, limit: int = 50, camera: str | None = None, verdict: str | None = None
    ) -> list[dict]:
        """The newest inspections first, optionally of one camera and/or verdict."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        where, params = _filters(camera, verdict)
        rows = self._db.query(
            f"SELECT * FROM inspections{where} ORDER BY inspected_ns DESC, id DESC LIMIT ?",
            [*params, int(limit)],
        )
        return [_inspection(row) for row in rows]

    def count(self, *, camera: str | None = None, verdict: str | None = None) -> int:
        """How many inspections match the filters."""
        where, params = _filters(camera, verdict)
        return int(self._db.query(f"SELECT COUNT(*) FROM inspections{where}", params)[0][0])

    def search(self, filters: SearchFilters, limit: int = 50, offset: int = 0) -> list[dict]:
        """Inspections matching ``filters``: newest first, or closest to the threshold first."""
        where, params = filters.sql()
        order = ("ABS(score - threshold) ASC, id DESC" if filters.order == "closeness"
                 else "inspected_ns DESC, id DESC")
        rows = self._db.query(
            f"SELECT * FROM inspections{where} ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, int(limit), int(offset)],
        )
        return [_inspection(row) for row in rows]

    def neighbours(self, filters: SearchFilters, inspection_id: int
                   ) -> tuple[int | None, int | None]:
        """The ids just newer and just older than ``inspection_id`` among those matching
        ``filters``, in the grid's newest-first order: the detail page's previous and next."""
        row = self._db.query("SELECT inspected_ns FROM inspections WHERE id = ?",
                             (inspection_id,))
        if not row:
            return None, None
        at = row[0][0]
        where, params = filters.sql()
        joiner = " AND " if where else " WHERE "
        found = []
        for sign, order in ((">", "ASC"), ("<", "DESC")):
            rows = self._db.query(
                f"SELECT id FROM inspections{where}{joiner}(inspected_ns {sign} ? OR"
                f" (inspected_ns = ? AND id {sign} ?)) ORDER BY inspected_ns {order},"
                f" id {order} LIMIT 1", [*params, at, at, inspection_id])
            found.append(int(rows[0][0]) if rows else None)
        return found[0], found[1]

    def search_count(self, filters: SearchFilters) -> int:
        where, params = filters.sql()
        return int(self._db.query(f"SELECT COUNT(*) FROM inspections{where}", params)[0][0])

    def verdict_counts(self, since_ns: int, after_id: int = 0,
                       upto_id: int | None = None) -> dict[str, dict[str, int]]:
        """Per camera, how many of each verdict since ``since_ns``; rows ``after_id`` <
        id <= ``upto_id`` only, so a caller can keep a running total of what is new."""
        rows = self._db.query(
            "SELECT camera, verdict, COUNT(*) FROM inspections WHERE inspected_ns >= ?"
            " AND id > ? AND id <= ? GROUP BY camera, verdict",
            (since_ns, after_id, upto_id if upto_id is not None else 2**63 - 1))
        counts: dict[str, dict[str, int]] = {}
        for camera, verdict, n in rows:
            counts.setdefault(camera, dict.fromkeys(VERDICTS, 0))[verdict] = n
        return counts

    def error_causes(self, since_ns: int) -> list[dict[str, Any]]:
        """Error verdicts since ``since_ns`` by camera and cause (the error's text up to its
        first colon: "stale", "late", "model failed", ...), most frequent first, each with
        its count, newest time and newest full message. Errors are the box's problem, not
        the part's: the panel shows them apart from the rejects to review."""
        rows = self._db.query(
            "SELECT camera, TRIM(SUBSTR(error, 1, INSTR(error || ':', ':') - 1)) AS cause,"
            " COUNT(*), MAX(inspected_ns) FROM inspections"
            " WHERE verdict = 'error' AND inspected_ns >= ? GROUP BY 1, 2"
            " ORDER BY 3 DESC, 4 DESC LIMIT 50", (since_ns,))
        causes = []
        for camera, cause, count, last_ns in rows:
            newest = self._db.query(
                "SELECT error FROM inspections WHERE verdict = 'error' AND camera = ?"
                " AND inspected_ns = ? LIMIT 1", (camera, last_ns))
            causes.append({"camera": camera, "cause": cause or "unknown", "count": count,
                           "last_ns": last_ns, "message": newest[0][0] if newest else None})
        return causes

    def last_id(self) -> int:
        return int(self._db.query("SELECT COALESCE(MAX(id), 0) FROM inspections")[0][0])

    def timeline(self, since_ns: int, bucket_s: int) -> list[tuple[str, int, str, int]]:
        """``(camera, bucket start in s, verdict, count)`` rows since ``since_ns``."""
        bucket_ns = int(bucket_s * 1e9)
        rows = self._db.query(
            "SELECT camera, (inspected_ns / ?) * ? / 1000000000, verdict, COUNT(*)"
            " FROM inspections WHERE inspected_ns >= ? GROUP BY 1, 2, 3 ORDER BY 2",
            (bucket_ns, bucket_ns, since_ns))
        return [tuple(r) for r in rows]

    def scores_since(self, since_ns: int, limit: int = 50_000) -> list[tuple[str, str, float,
                                                                          float | None]]:
        """``(camera, verdict, score, total latency ms)`` of the newest inspections."""
        rows = self._db.query(
            "SELECT camera, verdict, score, json_extract(latency_json, '$.total')"
            " FROM inspections WHERE inspected_ns >= ? AND score IS NOT NULL"
            " ORDER BY inspected_ns DESC LIMIT ?", (since_ns, int(limit)))
        return [tuple(r) for r in rows]

    def model_scores(self, sha256: str, *, since_ns: int | None = None, labeled: bool = False,
                     limit: int = 50_000) -> list[tuple[float, str | None]]:
        """``(score, label)`` of the newest rows the model ``sha256`` scored (``labeled``:
        only labeled ones), for what another threshold would have done: a threshold change
        keeps the model's hash, so these scores are the ones it would compare."""
        where = "model_sha256 = ? AND score IS NOT NULL"
        params: list[Any] = [sha256]
        if since_ns is not None:
            where += " AND inspected_ns >= ?"
            params.append(int(since_ns))
        if labeled:
            where += " AND label IS NOT NULL"
        rows = self._db.query(f"SELECT score, label FROM inspections WHERE {where}"
                              " ORDER BY inspected_ns DESC LIMIT ?", (*params, int(limit)))
        return [(float(r[0]), r[1]) for r in rows]
