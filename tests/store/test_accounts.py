"""Models and the audit log."""

from __future__ import annotations

import sqlite3

import pytest

from inspector.store import Store


def test_models_and_audit_rows(store: Store) -> None:
    store.register_model("ab" * 32, "demo", '{"name": "demo"}', active=False)
    store.register_model("ab" * 32, "demo v2", '{"name": "demo"}')
    store.audit("login", {"ip": "10.0.0.1"}, user="alice")
    with sqlite3.connect(store.db_path) as conn:
        name, active = conn.execute("SELECT name, active_from_ns FROM models").fetchone()
        audit = conn.execute("SELECT user, action, detail_json FROM audit").fetchall()
    assert name == "demo v2" and active is not None
    assert audit == [("alice", "login", '{"ip":"10.0.0.1"}')]
    with pytest.raises(ValueError):
        store.register_model("cd" * 32, "bad", "{not json")
