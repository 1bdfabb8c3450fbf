"""The alarm history: every alarm the box raised and when it cleared (part of ``Store``).

Kept so that an alarm that came and went overnight is still seen in the morning, and so
that ``inspector web`` run apart from inspection shows what the running box has raised.
"""

from __future__ import annotations

import time
from typing import Any

from inspector.store.db import Database

# Rows kept at most; the oldest cleared ones go first. A flapping alarm twice a minute
# fills it in about two weeks; a few MB of database.
MAX_ALARM_ROWS = 50_000
ALARM_COLUMNS = ("id", "kind", "subject", "reason", "raised_ns", "cleared_ns")


class AlarmLog:
    """Alarms as they are raised and cleared (part of ``Store``)."""

    _db: Database

    def log_alarm(self, kind: str, subject: str, reason: str, raised_ns: int,
                  cleared_ns: int | None = None) -> None:
        """Record a raise (``cleared_ns`` None) or the clear of the alarm raised at
        ``raised_ns``."""
        with self._db.transaction() as conn:
            if cleared_ns is None:
                conn.execute("INSERT INTO alarms (kind, subject, reason, raised_ns)"
                             " VALUES (?, ?, ?, ?)", (kind, subject, reason, raised_ns))
                conn.execute("DELETE FROM alarms WHERE id <= (SELECT MAX(id) FROM alarms) - ?"
                             " AND cleared_ns IS NOT NULL", (MAX_ALARM_ROWS,))
            else:
                conn.execute("UPDATE alarms SET cleared_ns = ?, reason = ? WHERE kind = ?"
                             " AND subject = ? AND raised_ns = ? AND cleared_ns IS NULL",
                             (cleared_ns, reason, kind, subject, raised_ns))

    def close_open_alarms(self, reason: str = "the box restarted") -> int:
        """Clear the alarms a previous run left raised (it ended without clearing them);
        returns how many. The running box raises again whatever still holds."""
        with self._db.transaction() as conn:
            return conn.execute("UPDATE alarms SET cleared_ns = ?, reason = reason || ?"
                                " WHERE cleared_ns IS NULL",
                                (time.time_ns(), f" ({reason})")).rowcount

    def alarms(self, active_only: bool = False, limit: int = 200) -> list[dict[str, Any]]:
        """The newest alarms first; only those still raised with ``active_only``."""
        where = " WHERE cleared_ns IS NULL" if active_only else ""
        rows = self._db.query(f"SELECT {', '.join(ALARM_COLUMNS)} FROM alarms{where}"
                              " ORDER BY raised_ns DESC, id DESC LIMIT ?", (limit,))
        return [{**dict(row), "active": row["cleared_ns"] is None} for row in rows]
