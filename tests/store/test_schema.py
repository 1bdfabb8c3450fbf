"""The database schema: created, reopened, refused when newer or not a database, migrated."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from inspector.errors import InspectorError
from inspector.store import Store
from inspector.store.schema import SCHEMA_VERSION

from .conftest import record


def test_schema_is_created_at_the_current_version_in_wal_mode(store: Store) -> None:
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"inspections", "labels", "models", "users", "audit"} <= tables


def test_reopening_is_idempotent(tmp_path: Path) -> None:
    first = Store(tmp_path)
    [inspection_id] = first.add_inspections([record(1)])
    first.close()
    first.close()  # closing twice is fine
    with pytest.raises(ValueError, match="closed"):
        first.count()
    with Store(tmp_path) as again:
        assert again.count() == 1
        assert again.get(inspection_id) is not None
    with sqlite3.connect(tmp_path / "inspections.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "inspections.db") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    newer = rf"schema version {SCHEMA_VERSION + 1} is newer than this software \({SCHEMA_VERSION}\)"
    with pytest.raises(InspectorError, match=newer):
        Store(tmp_path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "inspections.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(InspectorError, match=r"inspections\.db: cannot open"):
        Store(tmp_path)


def test_a_version_1_store_is_migrated_in_place_and_keeps_its_labels(tmp_path: Path) -> None:
    import inspector.store.schema as schema_module

    with sqlite3.connect(tmp_path / "inspections.db") as conn:
        conn.executescript(schema_module.MIGRATIONS[0])
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO inspections (camera, seq, captured_ns, inspected_ns, verdict,"
            " latency_json, regions_json, label) VALUES ('c', 1, 1, 1, 'pass', '{}', '[]', 'good')"
        )
        conn.execute(
            "INSERT INTO labels (inspection_id, label, user, created_ns)"
            " VALUES (1, 'good', 'qa', 1)"
        )
    with Store(tmp_path) as store:
        assert [h["label"] for h in store.label_history(1)] == ["good"]
        store.add_label(1, "none", "qa")  # an undo back to unlabeled
        assert store.get(1)["label"] is None
        assert [h["label"] for h in store.label_history(1)] == ["good", "none"]
