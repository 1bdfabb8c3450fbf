"""Models, the audit log, users' session generations and who labeled what."""

from __future__ import annotations

import sqlite3

import pytest

from inspector.store import Store

from .conftest import record


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


def test_replacing_a_user_or_ending_its_sessions_moves_its_session_generation(
    store: Store,
) -> None:
    store.add_user("alice", "qa", "hash-1")
    assert store.get_user("alice")["session_epoch"] == 0
    assert store.end_sessions("alice") == 1  # sign-out
    with pytest.raises(ValueError, match="already exists"):  # adding never resets
        store.add_user("alice", "operator", "hash-x")
    assert store.add_user("alice", "qa", "hash-2", replace=True, by="boss") is False
    assert store.get_user("alice")["session_epoch"] == 2  # a password reset ends sessions
    assert store.end_sessions("nobody") == 0
    log = store.audit_log()
    assert [(a["action"], a["user"]) for a in log][:2] in (
        [("user reset", "boss"), ("user added", None)],
        [("user added", None), ("user reset", "boss")])


def test_the_role_behind_the_current_label(store: Store) -> None:
    [first, second] = store.add_inspections([record(1), record(2)])
    store.add_user("op", "operator", "h")
    store.add_user("quinn", "qa", "h")
    assert store.label_author_role(first) is None  # never labeled
    store.add_label(first, "good", "op")
    assert store.label_author_role(first) == "operator"
    store.add_label(first, "defect", "quinn")
    assert store.label_author_role(first) == "qa"
    store.add_label(first, "none", "quinn")  # cleared: nothing to protect
    assert store.label_author_role(first) is None
    store.add_label(second, "good", "gone-since")
    assert store.label_author_role(second) == "unknown"
