"""The store's image files: overlays, pass sampling, a full disk and crash recovery."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import inspector.store.images as images_module
import inspector.store.retention as retention_module
from inspector.store import RetentionPolicy, Store
from inspector.store.images import PATH_COLUMNS, SUFFIXES, TEMP_SUFFIX, keeps_pass_images
from tests.conftest import REPO_ROOT

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
    real_write = images_module.write_temp

    def full_at_the_overlay(path: Path, data: bytes) -> Path:
        if path.name.endswith(".overlay.jpg"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, data)

    monkeypatch.setattr(images_module, "write_temp", full_at_the_overlay)
    ids = store.add_inspections([record(1), record(2, "pass")])
    rows = [store.get(i) for i in ids]
    assert [(r["verdict"], r["image_path"], r["thumb_path"]) for r in rows if r] == [
        ("reject", None, None),
        ("pass", None, None),
    ]
    assert store.alarm is not None and store.alarm.startswith("disk full")
    assert image_files(store) == []  # the frame written before the failure is gone too
    assert store.images_skipped == 2 and store.space_low

    monkeypatch.setattr(images_module, "write_temp", real_write)
    [later] = store.add_inspections([record(3)])
    row = store.get(later)
    assert row is not None and row["image_path"] is not None
    assert store.alarm is None and not store.space_low


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


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".overlay.jpg", ".thumb.jpg", ".overlay.png"])
def test_recover_removes_every_kind_of_orphaned_picture(store: Store, suffix: str) -> None:
    # Each file the store writes (and the JPEG frames and PNG overlays of earlier versions,
    # or of the other frame format) can be left
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


_CRASH = """
import os, sys
import inspector.store.images as images
from inspector.store import Store
from inspector.store.db import Database
from tests.store.conftest import record

store = Store(sys.argv[1])
if sys.argv[2] == "before-commit":  # files written, fsynced and renamed; the row never is
    Database.transaction = lambda self: os._exit(9)
else:  # files written and fsynced under their temporary names
    images.os.replace = lambda src, dst: os._exit(9)
store.add_inspections([record(1, "reject"), record(2, "pass"), record(3, "error")])
"""


@pytest.mark.parametrize("moment", ["before-commit", "before-rename"])
def test_a_crash_between_the_writes_and_the_commit_leaves_nothing_behind(
    store: Store, moment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention_module, "ORPHAN_SWEEP_INTERVAL_S", 0.0)  # every run
    # Finding: 232 orphaned overlays after 39 kills. Whatever the writer produces (every
    # suffix, temporary names too) must be recognised by recovery and by retention's sweep.
    [kept] = store.add_inspections([record(100)])
    named = set(image_files(store))
    crash = subprocess.run([sys.executable, "-c", _CRASH, str(store.root), moment],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert crash.returncode == 9, crash.stderr
    left = [path for path in image_files(store) if path not in named]
    if moment == "before-commit":
        assert sorted(p.name[p.name.index("."):] for p in left) == sorted(
            [".png", *SUFFIXES.values()] * 3)
    else:
        assert len(left) == 9 and all(p.name.endswith(TEMP_SUFFIX) for p in left)
    assert store.count() == 1
    # This store was open during the crash: only retention's sweep (old leftovers) or an
    # explicit recovery clean up.
    assert store.apply_retention(RetentionPolicy(), NOW)["orphans_removed"] == 0  # too young
    old = time.time() - 3600
    for path in left:
        os.utime(path, (old, old))
    # Until removed they count against the byte cap like any image file.
    before, orphan_bytes = store.image_bytes(), sum(path.stat().st_size for path in left)
    result = store.apply_retention(RetentionPolicy(), NOW)
    assert result["orphans_removed"] == 9 and result["deleted"] == 0
    assert set(image_files(store)) == named
    assert store.image_bytes() == before - orphan_bytes
    assert store.recover() == {"temp_removed": 0, "orphans_removed": 0, "paths_cleared": 0}
    row = store.get(kept)
    assert row is not None and all((store.root / row[c]).is_file() for c in PATH_COLUMNS)


def test_recovery_on_open_removes_every_kind_a_crash_leaves(store: Store) -> None:
    for moment in ("before-commit", "before-rename"):
        crash = subprocess.run([sys.executable, "-c", _CRASH, str(store.root), moment],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert crash.returncode == 9, crash.stderr
    assert len(image_files(store)) == 18
    assert store.recover() == {"temp_removed": 9, "orphans_removed": 9, "paths_cleared": 0}
    assert image_files(store) == [] and store.image_bytes() == 0
