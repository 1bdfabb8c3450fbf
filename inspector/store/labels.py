"""Labels: an append-only history per inspection; the current one also sits on its row.

The copy on ``inspections.label``/``defect_type`` keeps filters fast; the ``labels`` table
keeps who gave each label, when, and what it replaced, so a relabel destroys nothing.
"""

from __future__ import annotations

import json
import time

from inspector.store.accounts import append_audit
from inspector.store.db import Database
from inspector.store.records import LABELS, check_label_regions


class LabelHistory:
    """Labeling inspections (part of ``Store``); every label is audited."""

    _db: Database

    def add_label(
        self,
        inspection_id: int,
        label: str,
        user: str,
        defect_type: str | None = None,
        note: str | None = None,
        regions: list[dict] | None = None,
    ) -> int:
        """Append a label (keeping the one it replaces) and audit it; returns the label id.
        ``regions``: boxes drawn on a defect (``check_label_regions``), kept with this label."""
        if label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {label!r}")
        if not isinstance(user, str) or not user:
            raise ValueError("a label needs the name of the user who gave it")
        defect_type = defect_type or None
        if label != "defect" and defect_type is not None:
            raise ValueError(f"only a 'defect' label has a defect type, got {defect_type!r}")
        if regions:
            if label != "defect":
                raise ValueError("only a 'defect' label has regions")
            regions = check_label_regions(regions)
        regions_json = json.dumps(regions, separators=(",", ":")) if regions else None
        now = time.time_ns()
        with self._db.transaction() as conn:
            current = conn.execute(
                "SELECT label, defect_type FROM inspections WHERE id = ?", (inspection_id,)
            ).fetchone()
            if current is None:
                raise KeyError(inspection_id)
            label_id = conn.execute(
                "INSERT INTO labels (inspection_id, label, defect_type, note, user, created_ns,"
                " previous_label, previous_defect_type, regions_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (inspection_id, label, defect_type, note, user, now, *current, regions_json),
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
            if regions:
                detail["regions"] = regions
            append_audit(conn, "label", detail, user, now)
        return int(label_id or 0)

    def label_history(self, inspection_id: int) -> list[dict]:
        """Every label given to one inspection, oldest first; ``regions`` parsed (a list,
        empty when none were drawn)."""
        rows = self._db.query(
            "SELECT * FROM labels WHERE inspection_id = ? ORDER BY id", (inspection_id,)
        )
        return [_label(row) for row in rows]

    def label_regions(self, inspection_ids: list[int]) -> dict[int, list[dict]]:
        """The boxes drawn with each inspection's current label (only those that have any)."""
        found: dict[int, list[dict]] = {}
        for start in range(0, len(inspection_ids), 500):  # SQLite's bound on parameters
            chunk = inspection_ids[start:start + 500]
            rows = self._db.query(
                "SELECT inspection_id, regions_json FROM labels WHERE id IN (SELECT MAX(id)"
                f" FROM labels WHERE inspection_id IN ({','.join('?' * len(chunk))})"
                " GROUP BY inspection_id) AND regions_json IS NOT NULL", tuple(chunk))
            found.update((row[0], json.loads(row[1])) for row in rows)
        return found


def _label(row: object) -> dict:
    data = dict(row)  # type: ignore[call-overload]
    data["regions"] = json.loads(data.pop("regions_json") or "[]")
    return data
