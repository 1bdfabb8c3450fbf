"""The models the store has seen: each with its card, where its files are kept, where it came
from, and every change of the active model."""

from __future__ import annotations

import json
import time
from typing import Any

from inspector.store.accounts import append_audit
from inspector.store.db import Database, dumps

ACTIVATIONS = ("start", "promote", "rollback")
# Live-shadow rows kept at most (oldest dropped first): a day of one candidate at a few
# parts a second, about 30 MB of database.
MAX_SHADOW_RESULTS = 300_000
SHADOW_COLUMNS = ("camera", "seq", "inspected_ns", "model_sha256", "score", "verdict",
                  "active_sha256", "active_score", "active_verdict")


class ModelRegistry:
    """Models by sha256 (part of ``Store``); every result row names the model that scored it."""

    _db: Database

    def register_model(self, sha256: str, name: str, card_json: str, active: bool = True,
                       folder: str | None = None, origin: dict[str, Any] | None = None) -> None:
        """Insert or update a model; ``active`` marks it in use from now. ``folder`` is where
        the registry keeps its files (relative to the store's root), ``origin`` how it was
        made (fit, import, refit: by whom, from which samples)."""
        json.loads(card_json)  # a card that is not JSON is a caller's bug: ValueError
        now = time.time_ns()
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO models (sha256, name, card_json, added_ns, active_from_ns, folder,"
                " origin_json) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(sha256) DO UPDATE SET"
                " name = excluded.name, card_json = excluded.card_json,"
                " active_from_ns = COALESCE(excluded.active_from_ns, models.active_from_ns),"
                " folder = COALESCE(excluded.folder, models.folder),"
                " origin_json = CASE WHEN excluded.origin_json = '{}' THEN models.origin_json"
                " ELSE excluded.origin_json END",
                (sha256, name, card_json, now, now if active else None, folder,
                 dumps(origin or {})),
            )

    def active_model(self) -> dict | None:
        rows = self._db.query("SELECT sha256, name, card_json FROM models"
                              " ORDER BY active_from_ns DESC NULLS LAST LIMIT 1")
        if not rows:
            return None
        card = json.loads(rows[0]["card_json"])
        return {"sha256": rows[0]["sha256"], "name": rows[0]["name"],
                "threshold": card.get("threshold", {}).get("value")}

    def models(self) -> list[dict]:
        """Every model the store knows, newest first, with its origin decoded."""
        rows = self._db.query("SELECT sha256, name, card_json, added_ns, active_from_ns, folder,"
                              " origin_json FROM models ORDER BY added_ns DESC, sha256")
        return [{**dict(row), "origin": json.loads(row["origin_json"])} for row in rows]

    def record_activation(self, sha256: str, action: str, user: str | None,
                          detail: dict[str, Any] | None = None) -> None:
        """The model ``sha256`` is the active one from now: kept in the activation history
        and, unless it is a plain start, in the audit log, in one transaction."""
        if action not in ACTIVATIONS:
            raise ValueError(f"action must be one of {ACTIVATIONS}, got {action!r}")
        now = time.time_ns()
        detail = detail or {}
        with self._db.transaction() as conn:
            if conn.execute("SELECT 1 FROM models WHERE sha256 = ?", (sha256,)).fetchone() is None:
                raise KeyError(sha256)
            conn.execute("INSERT INTO activations (sha256, at_ns, user, action, detail_json)"
                         " VALUES (?, ?, ?, ?, ?)", (sha256, now, user, action, dumps(detail)))
            conn.execute("UPDATE models SET active_from_ns = ? WHERE sha256 = ?", (now, sha256))
            if action != "start":
                append_audit(conn, "model", {"action": action, "sha256": sha256, **detail},
                             user, now)

    def activations(self, limit: int = 100) -> list[dict]:
        """The latest changes of the active model, newest first."""
        rows = self._db.query("SELECT id, sha256, at_ns, user, action, detail_json"
                              " FROM activations ORDER BY id DESC LIMIT ?", (limit,))
        return [{**dict(row), "detail": json.loads(row["detail_json"])} for row in rows]

    def add_shadow_results(self, rows: list[tuple]) -> None:
        """Store a live shadow's verdicts (tuples in ``SHADOW_COLUMNS`` order), keeping at
        most ``MAX_SHADOW_RESULTS`` rows."""
        if not rows:
            return
        marks = ", ".join("?" * len(SHADOW_COLUMNS))
        with self._db.transaction() as conn:
            conn.executemany(f"INSERT INTO shadow_results ({', '.join(SHADOW_COLUMNS)})"
                             f" VALUES ({marks})", rows)
            conn.execute("DELETE FROM shadow_results WHERE id <= (SELECT MAX(id) FROM"
                         " shadow_results) - ?", (MAX_SHADOW_RESULTS,))

    def shadow_results(self, sha256: str, *, since_ns: int | None = None,
                       disagreements: bool = False, limit: int = 100) -> list[dict]:
        """A candidate's live-shadow verdicts, newest first (``disagreements``: only those
        where it decided otherwise than the active model)."""
        where, params = "model_sha256 = ?", [sha256]
        if since_ns is not None:
            where += " AND inspected_ns >= ?"
            params.append(int(since_ns))
        if disagreements:
            where += " AND verdict != active_verdict"
        rows = self._db.query(f"SELECT * FROM shadow_results WHERE {where} ORDER BY id DESC"
                              " LIMIT ?", (*params, int(limit)))
        return [dict(row) for row in rows]
