"""Labels: an append-only history that keeps the label each one replaced."""

from __future__ import annotations

import sqlite3

import pytest

from inspector.store import Store

from .conftest import record


def test_labels_are_appended_with_the_previous_label(store: Store) -> None:
    [inspection_id] = store.add_inspections([record(1, frame=None)])
    first = store.add_label(inspection_id, "defect", "olga", defect_type="scratch", note="edge")
    second = store.add_label(inspection_id, "good", "qa-bob")
    assert second > first

    row = store.get(inspection_id)
    assert row is not None and row["label"] == "good" and row["defect_type"] is None
    history = store.label_history(inspection_id)
    assert [(h["label"], h["defect_type"], h["user"]) for h in history] == [
        ("defect", "scratch", "olga"),
        ("good", None, "qa-bob"),
    ]
    assert history[0]["previous_label"] is None and history[0]["note"] == "edge"
    assert (history[1]["previous_label"], history[1]["previous_defect_type"]) == (
        "defect",
        "scratch",
    )
    with sqlite3.connect(store.db_path) as conn:
        audit = conn.execute("SELECT user, action FROM audit ORDER BY id").fetchall()
    assert audit == [("olga", "label"), ("qa-bob", "label")]

    with pytest.raises(KeyError):
        store.add_label(999, "good", "olga")
    with pytest.raises(ValueError):
        store.add_label(inspection_id, "meh", "olga")
    with pytest.raises(ValueError):
        store.add_label(inspection_id, "good", "olga", defect_type="scratch")
    assert len(store.label_history(inspection_id)) == 2
