"""Web UI accounts and the audit log: who may do what, and who did what when."""

from __future__ import annotations

import json
import sqlite3
import time

from inspector.store.db import Database, dumps

_AUDIT = "INSERT INTO audit (created_ns, user, action, detail_json) VALUES (?, ?, ?, ?)"


def append_audit(conn: sqlite3.Connection, action: str, detail: dict, user: str | None,
                 now_ns: int | None = None) -> None:
    """Add one audit row inside the caller's transaction, so the change and its record
    commit together."""
    created = time.time_ns() if now_ns is None else now_ns
    conn.execute(_AUDIT, (created, user, action, dumps(detail)))


class Accounts:
    """Users and the audit log (part of ``Store``)."""

    _db: Database

    def add_user(self, name: str, role: str, password_hash: str) -> None:
        """Create or replace a user (the password hash comes from the web layer)."""
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO users (name, role, password_hash, created_ns) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET role = excluded.role,"
                " password_hash = excluded.password_hash, disabled = 0",
                (name, role, password_hash, time.time_ns()),
            )
            append_audit(conn, "user", {"name": name, "role": role}, None)

    def get_user(self, name: str) -> dict | None:
        rows = self._db.query("SELECT * FROM users WHERE name = ?", (name,))
        return dict(rows[0]) if rows else None

    def users(self) -> list[dict]:
        return [dict(r) for r in self._db.query(
            "SELECT name, role, created_ns, disabled FROM users ORDER BY name")]

    def audit(self, action: str, detail: dict, user: str | None = None) -> None:
        """Append one audit row."""
        with self._db.transaction() as conn:
            append_audit(conn, action, detail, user)

    def audit_log(self, limit: int = 200) -> list[dict]:
        rows = self._db.query("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (int(limit),))
        return [{**dict(r), "detail": json.loads(r["detail_json"])} for r in rows]
