"""The store's image files: overlays, pass sampling, a full disk and crash recovery."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import inspector.store.images as images_module
from inspector.store import Store
from inspector.store.images import keeps_pass_images

from .conftest import DATE, FRAME, NOW, _red, image_files, record


def test_overlay_without_a_map_is_the_frame_with_boxes(store: Store) -> None:
    [inspection_id] = store.add_inspections(
        [record(1, anomaly_map=None, regions=[{"x": 2, "y": 3, "w": 10, "h": 10}])]
    )
    row = store.get(inspection_id)
    assert row is not None
    overlay = cv2.imread(str(store.root / row["overlay_path"]))
    assert _red(overlay[3, 5])
    # Away from the box the overlay is the frame, within JPEG's loss.
    difference = np.abs(overlay[20:, 20:].astype(int) - FRAME[20:, 20:].astype(int))
    assert difference.mean() < 2 and difference.max() < 16


def test_pass_sample_rate_keeps_images_of_rejects_only_at_zero(store: Store) -> None:
    ids = store.add_inspections(
        [record(1, "pass"), record(2, "reject"), record(3, "error")], pass_sample_rate=0.0
    )
    rows = [store.get(i) for i in ids]
    assert [r["image_path"] is not None for r in rows if r] == [False, True, True]
    assert len(image_files(store)) == 6
    kept = [keeps_pass_images("cam1", seq, 0.5) for seq in range(1000)]
    assert 400 < sum(kept) < 600
    assert kept == [keeps_pass_images("cam1", seq, 0.5) for seq in range(1000)]


def test_a_full_disk_keeps_the_verdict_and_raises_the_alarm(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = images_module.write_atomic

    def full_at_the_overlay(path: Path, data: bytes) -> None:
        if path.name.endswith(".overlay.jpg"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(images_module, "write_atomic", full_at_the_overlay)
    ids = store.add_inspections([record(1), record(2, "pass")])
    rows = [store.get(i) for i in ids]
    assert [(r["verdict"], r["image_path"], r["thumb_path"]) for r in rows if r] == [
        ("reject", None, None),
        ("pass", None, None),
    ]
    assert store.alarm is not None and store.alarm.startswith("disk full")
    assert image_files(store) == []  # the frame written before the failure is gone too

    monkeypatch.setattr(images_module, "write_atomic", real_write)
    [later] = store.add_inspections([record(3)])
    row = store.get(later)
    assert row is not None and row["image_path"] is not None
    assert store.alarm is None


def test_recover_removes_leftovers_and_clears_missing_paths(store: Store) -> None:
    [first, second] = store.add_inspections([record(1), record(2)])
    day = store.images / "cam1" / DATE
    temp = day / ".x.jpg.tmp"
    temp.write_bytes(b"half a jpeg")
    orphan = day / f"{NOW}-99.jpg"
    orphan.write_bytes(b"written, row never committed")
    row = store.get(first)
    assert row is not None
    (store.root / row["thumb_path"]).unlink()

    # With the store open elsewhere, leftovers may be writes in progress: opening keeps them.
    Store(store.root).close()
    assert temp.exists() and orphan.exists()
    assert store.recover(min_age_s=60) == {
        "temp_removed": 0,
        "orphans_removed": 0,
        "paths_cleared": 1,
    }
    assert temp.exists() and orphan.exists()
    old = time.time() - 3600
    os.utime(temp, (old, old))
    assert store.recover(min_age_s=60)["temp_removed"] == 1
    temp.write_bytes(b"half a jpeg")
    store.close()
    with Store(store.root) as reopened:  # the only one open: opening recovers
        assert not temp.exists() and not orphan.exists()
        after = reopened.get(first)
        assert after is not None and after["thumb_path"] is None
        assert after["image_path"] == row["image_path"]
        assert (reopened.get(second) or {}).get("thumb_path") is not None
        assert reopened.recover(min_age_s=0) == {
            "temp_removed": 0,
            "orphans_removed": 0,
            "paths_cleared": 0,
        }
        assert len(image_files(reopened)) == 5


@pytest.mark.parametrize("suffix", [".jpg", ".overlay.jpg", ".thumb.jpg", ".overlay.png"])
def test_recover_removes_every_kind_of_orphaned_picture(store: Store, suffix: str) -> None:
    # Each file the store writes (and the PNG overlays of earlier versions) can be left
    # behind by a crash between the write and the commit of its row.
    [kept] = store.add_inspections([record(1)])
    orphan = store.images / "cam1" / DATE / f"{NOW}-99{suffix}"
    orphan.write_bytes(b"written, row never committed")
    assert store.recover()["orphans_removed"] == 1
    assert not orphan.exists()
    row = store.get(kept)
    assert row is not None
    assert all((store.root / row[column]).is_file()
               for column in ("image_path", "overlay_path", "thumb_path"))
