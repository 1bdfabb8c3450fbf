"""The results store and the recorder thread, on real SQLite files and image folders."""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from collections import namedtuple
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

import inspector.store.store as store_module
from inspector.errors import InspectorError
from inspector.store.recorder import Recorder
from inspector.store.store import (
    SCHEMA_VERSION,
    InspectionRecord,
    RetentionPolicy,
    Store,
    keeps_pass_images,
)

NOW = 1_700_000_000 * 10**9  # 2023-11-14 22:13:20 UTC
DAY = 86_400 * 10**9
HOUR = 3_600 * 10**9
DATE = "2023-11-14"
# A smooth frame: small files, so tests stay fast.
FRAME = np.dstack(
    [np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))] * 2 + [np.full((48, 64), 90)]
).astype(np.uint8)
MAP = np.zeros((48, 64), np.float32)
MAP[10:20, 20:30] = 1.0


def record(
    seq: int,
    verdict: str = "reject",
    camera: str = "cam1",
    inspected_ns: int = NOW,
    frame: np.ndarray | None = FRAME,
    **fields: Any,
) -> InspectionRecord:
    values: dict[str, Any] = {
        "camera": camera,
        "seq": seq,
        "part_id": f"part-{seq}",
        "captured_ns": inspected_ns - 5_000_000,
        "inspected_ns": inspected_ns,
        "verdict": verdict,
        "score": 0.9 if verdict == "reject" else 0.1,
        "threshold": 0.5,
        "model_sha256": "ab" * 32,
        "latency_ms": {"queue": 1.0, "model": 12.5, "total": 14.0},
        "regions": [],
        "frame": frame,
        "anomaly_map": MAP if frame is not None else None,
    }
    values.update(fields)
    return InspectionRecord(**values)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with Store(tmp_path / "var") as opened:
        yield opened


def image_files(store: Store) -> list[Path]:
    return sorted(p for p in store.images.rglob("*") if p.is_file())


def seqs(store: Store, **filters: Any) -> list[int]:
    return sorted(row["seq"] for row in store.recent(10_000, **filters))


# --- schema ---------------------------------------------------------------------------------


def test_schema_is_created_at_the_current_version_in_wal_mode(store: Store) -> None:
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"inspections", "labels", "models", "users", "audit"} <= tables


def test_reopening_is_idempotent(tmp_path: Path) -> None:
    first = Store(tmp_path)
    [inspection_id] = first.add_inspections([record(1)])
    first.close()
    first.close()  # closing twice is fine
    with pytest.raises(ValueError, match="closed"):
        first.count()
    with Store(tmp_path) as again:
        assert again.count() == 1
        assert again.get(inspection_id) is not None
    with sqlite3.connect(tmp_path / "inspections.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "inspections.db") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    newer = rf"schema version {SCHEMA_VERSION + 1} is newer than this software \({SCHEMA_VERSION}\)"
    with pytest.raises(InspectorError, match=newer):
        Store(tmp_path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "inspections.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(InspectorError, match=r"inspections\.db: cannot open"):
        Store(tmp_path)


# --- adding results -------------------------------------------------------------------------


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
    assert row["image_path"] == f"{stem}.jpg"
    assert row["overlay_path"] == f"{stem}.overlay.jpg"
    assert row["thumb_path"] == f"{stem}.thumb.jpg"
    image = cv2.imread(str(store.root / row["image_path"]))
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


def test_models_and_audit_rows(store: Store) -> None:
    store.register_model("ab" * 32, "demo", '{"name": "demo"}', active=False)
    store.register_model("ab" * 32, "demo v2", '{"name": "demo"}')
    store.audit("login", {"ip": "10.0.0.1"}, user="alice")
    with sqlite3.connect(store.db_path) as conn:
        name, active = conn.execute("SELECT name, active_from_ns FROM models").fetchone()
        audit = conn.execute("SELECT user, action, detail_json FROM audit").fetchall()
    assert name == "demo v2" and active is not None
    assert audit == [("alice", "login", '{"ip":"10.0.0.1"}')]
    with pytest.raises(ValueError):
        store.register_model("cd" * 32, "bad", "{not json")


# --- labels ---------------------------------------------------------------------------------


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


# --- retention ------------------------------------------------------------------------------


def add_history(store: Store) -> tuple[list[int], int]:
    """Six passes 10..5 days old (seq 0..5), one reject 3 days old, one 1 hour old."""
    passes = [record(seq, "pass", inspected_ns=NOW - (10 - seq) * DAY) for seq in range(6)]
    rejects = [
        record(100, "reject", inspected_ns=NOW - 3 * DAY),
        record(101, "reject", inspected_ns=NOW - HOUR),
    ]
    ids = store.add_inspections([*passes, *rejects])
    return ids, store.image_bytes() // len(ids)


def test_retention_deletes_the_oldest_unlabeled_passes_first(store: Store) -> None:
    _, per_record = add_history(store)
    total = store.image_bytes()
    result = store.apply_retention(RetentionPolicy(max_bytes=total - per_record - 1), NOW)
    assert result == {"deleted": 2, "freed_bytes": 2 * per_record}
    assert seqs(store) == [2, 3, 4, 5, 100, 101]
    assert store.image_bytes() == total - 2 * per_record
    assert all((store.root / r["image_path"]).is_file() for r in store.recent(100))
    # Emptied day folders go with their files.
    assert len(list((store.images / "cam1").iterdir())) == 6


def test_retention_never_deletes_labeled_samples_or_recent_rejects(store: Store) -> None:
    ids, _ = add_history(store)
    store.add_label(ids[0], "good", "qa")
    store.add_label(ids[1], "defect", "qa", defect_type="dent")
    result = store.apply_retention(RetentionPolicy(max_bytes=0), NOW)
    assert result["deleted"] == 5  # four passes, then the old reject
    assert seqs(store) == [0, 1, 101]
    for row in store.recent(100):
        assert (store.root / row["image_path"]).is_file()
    assert len(store.label_history(ids[0])) == 1
    # Once the recent reject is old enough it may go; labeled samples never.
    store.apply_retention(RetentionPolicy(max_bytes=0), NOW + 2 * DAY)
    assert seqs(store) == [0, 1]


def test_keep_days_removes_old_unlabeled_passes_only(store: Store) -> None:
    ids, _ = add_history(store)
    store.add_inspections([record(200, "pass", inspected_ns=NOW - 9 * DAY, frame=None)])
    store.add_label(ids[0], "good", "qa")
    result = store.apply_retention(RetentionPolicy(keep_days=6.5), NOW)
    assert result["deleted"] == 4  # seq 1, 2, 3 and the imageless 200
    assert seqs(store) == [0, 4, 5, 100, 101]
    assert store.apply_retention(RetentionPolicy(keep_days=6.5), NOW)["deleted"] == 0
    with sqlite3.connect(store.db_path) as conn:
        actions = [r[0] for r in conn.execute("SELECT action FROM audit")]
    assert actions.count("retention") == 1


def test_max_disk_percent_uses_the_filesystem_of_the_root(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, per_record = add_history(store)
    usage = namedtuple("usage", "total used free")

    def disk_usage(path: Any) -> Any:
        assert Path(path) == store.root
        used = 43 * per_record + store.image_bytes()  # 51 records' worth of 100
        return usage(100 * per_record, used, 100 * per_record - used)

    monkeypatch.setattr(store_module.shutil, "disk_usage", disk_usage)
    store.apply_retention(RetentionPolicy(max_disk_percent=49.0), NOW)
    assert seqs(store) == [2, 3, 4, 5, 100, 101]


# --- failures and recovery ------------------------------------------------------------------


def test_a_full_disk_keeps_the_verdict_and_raises_the_alarm(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = store_module.write_atomic

    def full_at_the_overlay(path: Path, data: bytes) -> None:
        if path.name.endswith(".overlay.jpg"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(store_module, "write_atomic", full_at_the_overlay)
    ids = store.add_inspections([record(1), record(2, "pass")])
    rows = [store.get(i) for i in ids]
    assert [(r["verdict"], r["image_path"], r["thumb_path"]) for r in rows if r] == [
        ("reject", None, None),
        ("pass", None, None),
    ]
    assert store.alarm is not None and store.alarm.startswith("disk full")
    assert image_files(store) == []  # the frame written before the failure is gone too

    monkeypatch.setattr(store_module, "write_atomic", real_write)
    [later] = store.add_inspections([record(3)])
    row = store.get(later)
    assert row is not None and row["image_path"] is not None
    assert store.alarm is None


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


# --- the recorder thread --------------------------------------------------------------------


def test_recorder_drains_everything_on_stop(store: Store) -> None:
    recorder = Recorder(store, batch_size=64, flush_interval_s=0.05)
    recorder.start()
    assert recorder.name == "recorder" and not recorder.daemon
    for seq in range(500):
        recorder.submit(record(seq, "pass", frame=None))
    recorder.stop()
    assert not recorder.is_alive()
    assert store.count() == 500
    assert (recorder.recorded, recorder.failed, recorder.pending()) == (500, 0, 0)


class FlakyStore(Store):
    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures
        self.calls = 0
        self.retentions = 0

    def add_inspections(self, records: Any, pass_sample_rate: float = 1.0) -> list[int]:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("database hiccup")
        return super().add_inspections(records, pass_sample_rate)

    def apply_retention(self, policy: RetentionPolicy, now_ns: int | None = None) -> Any:
        self.retentions += 1
        return super().apply_retention(policy, now_ns)


def test_recorder_retries_a_failed_batch_once(tmp_path: Path) -> None:
    flaky = FlakyStore(tmp_path, failures=1)
    recorder = Recorder(flaky, batch_size=100, flush_interval_s=0.5)
    for seq in range(10):
        recorder.submit(record(seq, frame=None))
    recorder.start()
    recorder.stop()
    assert (recorder.recorded, recorder.failed) == (10, 0)
    assert flaky.calls == 2 and flaky.count() == 10
    flaky.close()


def test_recorder_counts_a_batch_that_fails_twice_and_goes_on(tmp_path: Path) -> None:
    flaky = FlakyStore(tmp_path, failures=2)
    recorder = Recorder(flaky, batch_size=100, flush_interval_s=0.05)
    for seq in range(5):  # queued before the start: one batch
        recorder.submit(record(seq, frame=None))
    recorder.start()
    deadline = time.monotonic() + 5
    while recorder.failed == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    recorder.submit(record(99, frame=None))
    recorder.stop()
    assert (recorder.recorded, recorder.failed) == (1, 5)
    assert seqs(flaky) == [99]
    flaky.close()


def test_recorder_applies_the_policy(tmp_path: Path) -> None:
    flaky = FlakyStore(tmp_path, failures=0)
    policy = RetentionPolicy(pass_sample_rate=0.0, keep_days=1)
    recorder = Recorder(flaky, policy, flush_interval_s=0.02, retention_interval_s=0.05)
    recorder.start()
    recorder.submit(record(1, "pass", inspected_ns=time.time_ns()))
    recorder.submit(record(2, "reject", inspected_ns=time.time_ns()))
    recorder.submit(record(3, "pass", inspected_ns=time.time_ns() - 2 * DAY))
    time.sleep(0.3)
    recorder.stop()
    assert flaky.retentions >= 2
    assert seqs(flaky) == [1, 2]  # the old pass went, with keep_days
    rows = {r["seq"]: r for r in flaky.recent()}
    assert rows[1]["image_path"] is None and rows[2]["image_path"] is not None
    flaky.close()


def test_submit_never_blocks_while_the_store_is_busy(store: Store) -> None:
    gate = threading.Event()
    real_add = store.add_inspections

    def slow_add(records: Any, pass_sample_rate: float = 1.0) -> list[int]:
        gate.wait(5)
        return real_add(records, pass_sample_rate)

    store.add_inspections = slow_add  # type: ignore[method-assign]
    recorder = Recorder(store, batch_size=8, flush_interval_s=0.01)
    recorder.start()
    started = time.monotonic()
    for seq in range(200):
        recorder.submit(record(seq, frame=None))
    assert time.monotonic() - started < 0.5
    assert recorder.pending() > 100
    gate.set()
    recorder.stop()
    assert store.count() == 200


def test_a_version_1_store_is_migrated_in_place_and_keeps_its_labels(tmp_path: Path) -> None:
    import inspector.store.store as store_module

    with sqlite3.connect(tmp_path / "inspections.db") as conn:
        conn.executescript(store_module.MIGRATIONS[0])
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO inspections (camera, seq, captured_ns, inspected_ns, verdict,"
            " latency_json, regions_json, label) VALUES ('c', 1, 1, 1, 'pass', '{}', '[]', 'good')"
        )
        conn.execute(
            "INSERT INTO labels (inspection_id, label, user, created_ns)"
            " VALUES (1, 'good', 'qa', 1)"
        )
    with Store(tmp_path) as store:
        assert [h["label"] for h in store.label_history(1)] == ["good"]
        store.add_label(1, "none", "qa")  # an undo back to unlabeled
        assert store.get(1)["label"] is None
        assert [h["label"] for h in store.label_history(1)] == ["good", "none"]


def _red(pixel: np.ndarray) -> bool:
    """Red as a JPEG keeps it: close, not exact."""
    blue, green, red = (int(v) for v in pixel)
    return red > 150 and red > 2 * max(green, blue)
