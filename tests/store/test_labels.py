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


def test_regions_drawn_on_a_defect_are_kept_with_that_label(store: Store) -> None:
    first, second = store.add_inspections([record(1, frame=None), record(2, frame=None)])
    boxes = [{"x": 10, "y": 20, "w": 5, "h": 7}, {"x": 0, "y": 0, "w": 1, "h": 1}]
    store.add_label(first, "defect", "qa", defect_type="scratch", regions=boxes)
    store.add_label(second, "defect", "qa", regions=boxes[:1])
    store.add_label(second, "defect", "qa", defect_type="dent")  # redrawn without boxes
    assert store.label_history(first)[-1]["regions"] == boxes
    assert [h["regions"] for h in store.label_history(second)] == [boxes[:1], []]
    # Only the current label's boxes count.
    assert store.label_regions([first, second, 999]) == {first: boxes}
    with sqlite3.connect(store.db_path) as conn:
        [detail] = conn.execute("SELECT detail_json FROM audit WHERE action = 'label'"
                                " ORDER BY id LIMIT 1").fetchone()
    assert '"regions"' in detail


@pytest.mark.parametrize("regions", [
    [{"x": 1, "y": 1, "w": 0, "h": 3}],  # empty
    [{"x": -1, "y": 1, "w": 2, "h": 3}],
    [{"x": 1.5, "y": 1, "w": 2, "h": 3}],
    [{"x": True, "y": 1, "w": 2, "h": 3}],
    [{"x": 1, "y": 1, "w": 2}],
    [{"x": 1, "y": 1, "w": 2, "h": 3, "label": "<script>"}],
    [{"x": 65_000, "y": 1, "w": 1000, "h": 3}],
    [{"x": 1, "y": 1, "w": 1, "h": 1}] * 51,
    "x=1",
])
def test_malformed_regions_are_refused_and_nothing_is_stored(store: Store, regions) -> None:
    [inspection_id] = store.add_inspections([record(1, frame=None)])
    with pytest.raises(ValueError):
        store.add_label(inspection_id, "defect", "qa", regions=regions)
    with pytest.raises(ValueError, match="only a 'defect' label has regions"):
        store.add_label(inspection_id, "good", "qa", regions=[{"x": 1, "y": 1, "w": 1, "h": 1}])
    assert store.label_history(inspection_id) == []
