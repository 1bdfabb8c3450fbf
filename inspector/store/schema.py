"""The database schema as a list of migration steps; ``user_version`` counts the steps applied.

Step N (1-based) takes the schema from user_version N-1 to N. Append only; never edit a
released step. A step is SQL (one statement per line end) or a function of the connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator

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

# v4 (users): a session generation per user. A session records the one it was signed in
# under and ends when it changes (sign-out, a new password or role), so a copied cookie
# stops working after sign-out.
_SCHEMA_V4 = """
ALTER TABLE users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;
"""

# v5 (the model registry): where a kept model's files are and where it came from, and every
# change of the active model (at start, promotion, rollback), so a rollback and a restart
# know which model came before.
_SCHEMA_V5 = """
ALTER TABLE models ADD COLUMN folder TEXT;
ALTER TABLE models ADD COLUMN origin_json TEXT NOT NULL DEFAULT '{}';
CREATE TABLE activations (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL,
    at_ns INTEGER NOT NULL,
    user TEXT,
    action TEXT NOT NULL CHECK(action IN ('start', 'promote', 'rollback')),
    detail_json TEXT NOT NULL
);
CREATE INDEX activations_at ON activations(at_ns);
"""

# v6 (live shadow): a candidate's verdicts on live frames, beside the active model's; they
# never reach the outputs. Bounded by the store (MAX_SHADOW_RESULTS, oldest dropped first).
_SCHEMA_V6 = """
CREATE TABLE shadow_results (
    id INTEGER PRIMARY KEY,
    camera TEXT NOT NULL,
    seq INTEGER NOT NULL,
    inspected_ns INTEGER NOT NULL,
    model_sha256 TEXT NOT NULL,
    score REAL NOT NULL,
    verdict TEXT NOT NULL CHECK(verdict IN ('pass', 'reject')),
    active_sha256 TEXT NOT NULL,
    active_score REAL NOT NULL,
    active_verdict TEXT NOT NULL CHECK(active_verdict IN ('pass', 'reject'))
);
CREATE INDEX shadow_results_model ON shadow_results(model_sha256, id);
"""

# v7 (alarms): every alarm raised and cleared, bounded by the store (MAX_ALARM_ROWS).
_SCHEMA_V7 = """
CREATE TABLE alarms (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    reason TEXT NOT NULL,
    raised_ns INTEGER NOT NULL,
    cleared_ns INTEGER
);
CREATE INDEX alarms_raised ON alarms(raised_ns);
CREATE INDEX alarms_open ON alarms(cleared_ns) WHERE cleared_ns IS NULL;
"""

# v8 (region labels): the boxes a person drew on a defect, in the stored frame's pixels,
# kept with the label that gave them (NULL: none drawn).
_SCHEMA_V8 = """
ALTER TABLE labels ADD COLUMN regions_json TEXT;
"""

MIGRATIONS: tuple[str | Callable[[sqlite3.Connection], None], ...] = (
    _SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3, _SCHEMA_V4, _SCHEMA_V5, _SCHEMA_V6, _SCHEMA_V7,
    _SCHEMA_V8)
SCHEMA_VERSION = len(MIGRATIONS)


def apply_step(conn: sqlite3.Connection, step: str | Callable[[sqlite3.Connection], None]) -> None:
    """Run one migration step inside the caller's transaction."""
    if callable(step):
        step(conn)
        return
    for statement in _statements(step):
        conn.execute(statement)


def _statements(script: str) -> Iterator[str]:
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""
    if buffer.strip():
        raise ValueError(f"migration SQL ends in an incomplete statement: {buffer.strip()[:60]}")
