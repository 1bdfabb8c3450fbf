"""A full disk: verdicts are still stored (without images), retention runs at once, the alarm
is raised while it lasts and cleared when space is back. On a real tiny filesystem (tmpfs)
where mounting is allowed; the free-space floor also without one."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from inspector.store import Recorder, RetentionPolicy, Store
from inspector.store.store import RESERVE_FILE

from .conftest import NOISY, FlakyStore, fill, record

KIB = 1024


def _noisy(seq: int, verdict: str = "reject") -> object:
    return record(seq, verdict, frame=NOISY, anomaly_map=None, inspected_ns=time.time_ns())


def _wait(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_full_disk_still_stores_every_verdict_and_clears_the_alarm_when_space_is_back(
    tiny_fs: Path,
) -> None:
    # Finding: while the disk was full only 43 of 963 verdicts were stored (SQLite could
    # not grow its WAL).
    store = Store(tiny_fs / "store", min_free_bytes=256 * KIB, reserve_bytes=512 * KIB)
    reserve = store.root / RESERVE_FILE
    assert reserve.stat().st_size == 512 * KIB and store.alarm is None
    filler = fill(tiny_fs)  # someone else fills the disk
    recorder = Recorder(store, batch_size=8)
    recorder.start()
    for seq in range(200):
        recorder.submit(_noisy(seq))
    assert recorder.stop()
    assert (recorder.recorded, recorder.failed) == (200, 0)
    with sqlite3.connect(store.db_path) as conn:
        rows = conn.execute("SELECT seq, image_path FROM inspections").fetchall()
    assert sorted(seq for seq, _ in rows) == list(range(200))
    assert all(path is None for _, path in rows)
    assert store.images_skipped + recorder.shed == 200  # skipped here, or shed when queued
    assert store.alarm is not None and store.alarm.startswith("disk full") and store.space_low
    assert not reserve.exists()  # given to SQLite

    filler.unlink()
    [later] = store.add_inspections([_noisy(500)])
    row = store.get(later)
    assert row is not None and (store.root / row["image_path"]).is_file()
    assert store.alarm is None and not store.space_low
    assert reserve.stat().st_size == 512 * KIB  # back for the next time
    store.close()


def test_low_space_runs_retention_at_once_and_makes_room_for_reject_pictures(
    tiny_fs: Path,
) -> None:
    store = FlakyStore(tiny_fs / "store", failures=0, min_free_bytes=384 * KIB,
                       reserve_bytes=256 * KIB)
    # A cap that never bites by itself; the next scheduled run is an hour away.
    recorder = Recorder(store, RetentionPolicy(max_disk_percent=100.0),
                        retention_interval_s=3600)
    recorder.start()
    _wait(lambda: store.retentions == 1)  # the run at start
    for seq in range(40):  # passes with pictures until space runs low
        recorder.submit(_noisy(seq, "pass"))
        _wait(lambda: recorder.pending() == 0)
        time.sleep(0.05)
        if store.retentions > 1:
            break
    assert store.retentions == 2  # at once, not an hour later
    recorder.submit(_noisy(100))
    assert recorder.stop()
    row = store.recent(1, verdict="reject")[0]
    assert row["seq"] == 100 and (store.root / row["image_path"]).is_file()
    kept = [r["seq"] for r in store.recent(100, verdict="pass")]
    assert 0 not in kept  # the oldest passes made the room
    assert store.alarm is None
    store.close()


def test_under_the_free_space_floor_verdicts_are_stored_without_images(tmp_path: Path) -> None:
    store = Store(tmp_path / "store", min_free_bytes=2**62)  # more than any disk has
    ids = store.add_inspections([record(1), record(2, "pass")])
    assert [(store.get(i) or {}).get("image_path") for i in ids] == [None, None]
    assert store.images_skipped == 2 and store.space_low
    assert store.alarm is not None and "under the floor" in store.alarm
    assert not [p for p in store.images.rglob("*") if p.is_file()]
    store._files.min_free_bytes = 0  # space is back
    [later] = store.add_inspections([record(3)])
    assert (store.get(later) or {}).get("image_path") is not None
    assert store.alarm is None and not store.space_low
    store.close()
