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

    def add_user(self, name: str, role: str, password_hash: str, replace: bool = False,
                 by: str | None = None) -> bool:
        """Create a user, or with ``replace`` reset an existing one's role and password (the
        hash comes from the web layer); returns whether the user was new. Without
        ``replace`` an existing name is a ValueError: adding must never silently reset
        someone. Resetting ends the user's sessions: whoever had the old password is out.
        ``by`` is who did it, for the audit log (None: the box's own command line)."""
        with self._db.transaction() as conn:
            exists = conn.execute("SELECT role FROM users WHERE name = ?", (name,)).fetchone()
            if exists and not replace:
                raise ValueError(f"user {name!r} already exists (role {exists[0]}); "
                                 "reset it instead to set a new role and password")
            conn.execute(
                "INSERT INTO users (name, role, password_hash, created_ns) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET role = excluded.role,"
                " password_hash = excluded.password_hash, disabled = 0,"
                " session_epoch = users.session_epoch + 1",
                (name, role, password_hash, time.time_ns()),
            )
            append_audit(conn, "user reset" if exists else "user added",
                         {"name": name, "role": role}, by)
            return not exists

    def end_sessions(self, name: str) -> int:
        """End every session of ``name`` (sign-out): its session generation moves on, so
        cookies issued before stop working. Returns the new generation (0: no such user)."""
        with self._db.transaction() as conn:
            conn.execute("UPDATE users SET session_epoch = session_epoch + 1 WHERE name = ?",
                         (name,))
            row = conn.execute("SELECT session_epoch FROM users WHERE name = ?",
                               (name,)).fetchone()
        return int(row[0]) if row else 0

    def set_role(self, name: str, role: str, by: str | None = None) -> bool:
        """Give a user another role, keeping their password; their sessions end, so the
        new role applies from their next sign-in. False when there is no such user."""
        with self._db.transaction() as conn:
            before = conn.execute("SELECT role FROM users WHERE name = ?", (name,)).fetchone()
            if before is None:
                return False
            conn.execute("UPDATE users SET role = ?, session_epoch = session_epoch + 1"
                         " WHERE name = ?", (role, name))
            append_audit(conn, "user role", {"name": name, "role": role,
                                             "previous": before[0]}, by)
        return True

    def set_disabled(self, name: str, disabled: bool, by: str | None = None) -> bool:
        """Disable a user (their sessions end, sign-in is refused) or enable them again;
        False when there is no such user. Audited with ``by``."""
        with self._db.transaction() as conn:
            changed = conn.execute(
                "UPDATE users SET disabled = ?, session_epoch = session_epoch + ?"
                " WHERE name = ?", (int(disabled), int(disabled), name)).rowcount
            if changed:
                append_audit(conn, "user disabled" if disabled else "user enabled",
                             {"name": name}, by)
        return bool(changed)

    def label_author_role(self, inspection_id: int) -> str | None:
        """The role of whoever gave the inspection's current label: None when unlabeled,
        ``"unknown"`` when that user no longer exists."""
        rows = self._db.query(
            "SELECT l.label, u.role FROM labels l LEFT JOIN users u ON u.name = l.user"
            " WHERE l.inspection_id = ? ORDER BY l.id DESC LIMIT 1", (inspection_id,))
        if not rows or rows[0]["label"] == "none":
            return None
        return rows[0]["role"] or "unknown"

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

    def audit_log(self, limit: int = 200, action: str | None = None,
                  user: str | None = None) -> list[dict]:
        """The newest entries first, only those of ``action`` and by ``user`` when given
        (``user=""``: the box itself, no signed-in user)."""
        where, params = [], []
        if action:
            where.append("action = ?")
            params.append(action)
        if user is not None:
            where.append("user IS NULL" if user == "" else "user = ?")
            params += [] if user == "" else [user]
        sql = "SELECT * FROM audit" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._db.query(sql + " ORDER BY id DESC LIMIT ?", (*params, int(limit)))
        return [{**dict(r), "detail": json.loads(r["detail_json"])} for r in rows]

    def audit_actions(self) -> list[str]:
        """Every kind of action the audit log holds, for choosing one."""
        return [r["action"] for r in self._db.query(
            "SELECT DISTINCT action FROM audit ORDER BY action")]
