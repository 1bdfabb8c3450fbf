"""Writing inspection rows with their pictures and reading them back, on real SQLite files."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import cv2
import numpy as np
import pytest

from inspector.store import Store

from .conftest import DATE, FRAME, MAP, NOW, _red, image_files, record


def test_add_inspections_writes_rows_and_decodable_images(store: Store) -> None:
    frame = cv2.resize(FRAME, (400, 300))
    regions = [{"x": 50, "y": 60, "w": 100, "h": 80, "area_px": 8000, "area_mm2": None}]
    reject = replace(
        record(
            7,
            frame=frame,
            anomaly_map=MAP,
            regions=[{**regions[0], "peak": np.float32(0.75)}],
            score=np.float32(0.9),
        ),
        seq=np.int64(7),  # numpy scalars from the pipeline are stored as plain numbers
    )
    error = record(8, verdict="error", frame=None, score=None, error="model failed")
    ids = store.add_inspections([reject, error])
    assert len(ids) == 2

    row = store.get(ids[0])
    assert row is not None
    assert row["verdict"] == "reject" and row["seq"] == 7 and row["camera"] == "cam1"
    assert row["score"] == pytest.approx(0.9)
    assert row["latency_ms"] == {"queue": 1.0, "model": 12.5, "total": 14.0}
    assert row["regions"] == [{**regions[0], "peak": 0.75}]
    stem = f"images/cam1/{DATE}/{NOW}-7"
    assert row["image_path"] == f"{stem}.png"  # the frame as the line saw it: lossless
    assert row["overlay_path"] == f"{stem}.overlay.jpg"
    assert row["thumb_path"] == f"{stem}.thumb.jpg"
    image = cv2.imread(str(store.root / row["image_path"]))
    assert np.array_equal(image, reject.frame)
    overlay = cv2.imread(str(store.root / row["overlay_path"]))
    thumb = cv2.imread(str(store.root / row["thumb_path"]))
    assert image.shape == overlay.shape == (300, 400, 3)
    assert thumb.shape == (192, 256, 3)
    assert _red(overlay[60, 100])  # the region's top edge, drawn in red
    assert not np.array_equal(overlay, cv2.imread(str(store.root / row["image_path"])))

    failed = store.get(ids[1])
    assert failed is not None and failed["error"] == "model failed"
    assert failed["image_path"] is failed["overlay_path"] is failed["thumb_path"] is None
    assert store.get(12345) is None
    assert len(image_files(store)) == 3


@pytest.mark.parametrize("camera", ["../x", "a/b", "a\\b", "..", ".", "", "cam..1"])
def test_camera_ids_that_could_leave_the_image_folder_are_refused(
    store: Store, camera: str
) -> None:
    with pytest.raises(ValueError, match="camera id"):
        store.add_inspections([record(1), record(2, camera=camera)])
    assert store.count() == 0 and image_files(store) == []


def test_recent_and_count_filter_and_order(store: Store) -> None:
    store.add_inspections(
        [
            record(1, "pass", inspected_ns=NOW + 1, frame=None),
            record(2, "reject", inspected_ns=NOW + 3, frame=None),
            record(3, "pass", camera="cam2", inspected_ns=NOW + 2, frame=None),
        ]
    )
    assert [r["seq"] for r in store.recent()] == [2, 3, 1]
    assert [r["seq"] for r in store.recent(1)] == [2]
    assert [r["seq"] for r in store.recent(camera="cam1", verdict="pass")] == [1]
    assert store.count() == 3
    assert store.count(verdict="pass") == 2
    assert store.count(camera="cam2") == 1
    with pytest.raises(ValueError):
        store.count(verdict="maybe")


def test_rows_of_a_failed_transaction_leave_no_image_files(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sqlite3.connect(store.db_path) as conn:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON inspections WHEN NEW.seq = 2"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    with pytest.raises(sqlite3.IntegrityError, match="refused"):
        store.add_inspections([record(1), record(2)])
    assert store.count() == 0 and image_files(store) == []


def test_frames_can_be_kept_as_jpeg_to_save_space(tmp_path) -> None:
    with Store(tmp_path / "var", frame_format="jpeg") as jpeg_store:
        [kept] = jpeg_store.add_inspections([record(1)])
        assert jpeg_store.get(kept)["image_path"].endswith("-1.jpg")
    with pytest.raises(ValueError, match="frame_format"):
        Store(tmp_path / "other", frame_format="gif")
