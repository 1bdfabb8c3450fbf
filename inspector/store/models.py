"""The models the store has seen: each with its card, and when it became the active one."""

from __future__ import annotations

import json
import time

from inspector.store.db import Database


class ModelRegistry:
    """Models by sha256 (part of ``Store``); every result row names the model that scored it."""

    _db: Database

    def register_model(self, sha256: str, name: str, card_json: str, active: bool = True) -> None:
        """Insert or update a model; ``active`` marks it in use from now."""
        json.loads(card_json)  # a card that is not JSON is a caller's bug: ValueError
        now = time.time_ns()
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO models (sha256, name, card_json, added_ns, active_from_ns)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(sha256) DO UPDATE SET"
                " name = excluded.name, card_json = excluded.card_json,"
                " active_from_ns = COALESCE(excluded.active_from_ns, models.active_from_ns)",
                (sha256, name, card_json, now, now if active else None),
            )

    def active_model(self) -> dict | None:
        rows = self._db.query("SELECT sha256, name, card_json FROM models"
                              " ORDER BY active_from_ns DESC NULLS LAST LIMIT 1")
        if not rows:
            return None
        card = json.loads(rows[0]["card_json"])
        return {"sha256": rows[0]["sha256"], "name": rows[0]["name"],
                "threshold": card.get("threshold", {}).get("value")}
