"""The recorder: group commit, a bounded queue, drains on stop, retries, applies the policy."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import inspector.store.images as images_module
from inspector.store import Recorder, RetentionPolicy, Store
from inspector.store.db import Database

from .conftest import DAY, FlakyStore, record, seqs


def _rows(store: Store) -> list[tuple[int, str, str | None]]:
    """What the SQLite file itself holds, read over a connection of its own."""
    with sqlite3.connect(store.db_path) as conn:
        return conn.execute("SELECT seq, verdict, image_path FROM inspections ORDER BY seq"
                            ).fetchall()


def test_recorder_drains_everything_on_stop(store: Store) -> None:
    recorder = Recorder(store, batch_size=64)
    recorder.start()
    assert recorder.name == "recorder" and not recorder.daemon
    for seq in range(500):
        recorder.submit(record(seq, "pass", frame=None))
    assert recorder.stop()
    assert not recorder.is_alive()
    assert store.count() == 500
    assert (recorder.recorded, recorder.failed, recorder.pending()) == (500, 0, 0)


def test_stop_under_load_writes_every_submitted_record_to_the_file(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Finding: Ctrl-C after minutes of load closed the store under a busy recorder (10 s
    # cut-off) and lost 400 verdicts in a storm of "the store is closed" tracebacks.
    real_write = images_module.write_temp

    def slow_write(path: Path, data: bytes) -> Path:
        time.sleep(0.015)  # a slow disk: 45 ms of image writes per record
        return real_write(path, data)

    monkeypatch.setattr(images_module, "write_temp", slow_write)
    recorder = Recorder(store)
    for seq in range(300):  # 13 s of image writes if every record kept its pictures
        recorder.submit(record(seq))
    assert recorder.pending() == 300
    recorder.start()
    assert recorder.stop()  # as run_pipeline does: stop, then close
    store.close()
    rows = _rows(store)
    assert [seq for seq, _, _ in rows] == list(range(300))
    kept = [seq for seq, _, path in rows if path is not None]
    # The queue holds the pictures of 32 records at most; the rest keep only their verdict.
    assert kept == list(range(recorder.max_pending_images)) == list(range(32))
    assert (recorder.recorded, recorder.shed, recorder.dropped, recorder.failed) == (
        300, 268, 0, 0)


def test_a_batch_is_one_fsync_round_and_one_transaction(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    transactions = []
    real_fsync, real_transaction = images_module._fsync, Database.transaction

    def fsync(path: Path) -> None:
        synced.append(path)
        real_fsync(path)

    def transaction(self: Database) -> Any:
        transactions.append(1)
        return real_transaction(self)

    monkeypatch.setattr(images_module, "_fsync", fsync)
    monkeypatch.setattr(Database, "transaction", transaction)
    recorder = Recorder(store)
    for seq in range(10):  # queued before the start: one batch
        recorder.submit(record(seq))
    recorder.start()
    assert recorder.stop()
    assert store.count() == 10 and len(transactions) == 1
    folders = [path for path in synced if path.is_dir()]
    assert len(synced) == 31 and folders == [store.images / "cam1" / "2023-11-14"]


def test_the_queue_sheds_pass_pictures_first_and_never_drops_a_verdict_silently(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder(store, max_pending=12, max_pending_images=4)  # not started yet
    for seq in range(4):
        recorder.submit(record(seq, "pass"))
    recorder.submit(record(10, "reject"))  # takes the place of pass 3's pictures
    recorder.submit(record(11, "error"))  # ... and of pass 2's
    recorder.submit(record(4, "pass"))  # no room: queued without pictures
    for seq in range(20, 25):
        recorder.submit(record(seq, "pass", frame=None))
    assert recorder.pending() == recorder.high_water == 12
    with caplog.at_level(logging.WARNING):
        for seq in range(30, 33):
            recorder.submit(record(seq, "reject"))  # the queue is full
    assert (recorder.shed, recorder.dropped) == (3, 3)
    assert recorder.alarm is not None and "not recorded" in recorder.alarm
    assert "NOT recorded" in caplog.text
    recorder.start()
    assert recorder.stop()
    with_pictures = {seq for seq, _, path in _rows(store) if path is not None}
    assert with_pictures == {0, 1, 10, 11}
    assert seqs(store) == [0, 1, 2, 3, 4, 10, 11, *range(20, 25)]
    assert recorder.alarm is None  # caught up
    recorder.submit(record(99))  # after stop: counted, not lost silently
    assert recorder.dropped == 4


def test_passes_outside_the_sample_hold_no_frame_in_the_queue(store: Store) -> None:
    recorder = Recorder(store, RetentionPolicy(pass_sample_rate=0.0), max_pending_images=2)
    for seq in range(50):
        recorder.submit(record(seq, "pass"))
    recorder.submit(record(100, "reject"))
    assert recorder.shed == 0
    recorder.start()
    assert recorder.stop()
    assert {seq for seq, _, path in _rows(store) if path is not None} == {100}


def test_recorder_retries_a_failed_batch_once(tmp_path: Path) -> None:
    flaky = FlakyStore(tmp_path, failures=1)
    recorder = Recorder(flaky, batch_size=100)
    for seq in range(10):
        recorder.submit(record(seq, frame=None))
    recorder.start()
    recorder.stop()
    assert (recorder.recorded, recorder.failed) == (10, 0)
    assert flaky.calls == 2 and flaky.count() == 10
    flaky.close()


def test_recorder_counts_a_batch_that_fails_twice_and_goes_on(tmp_path: Path) -> None:
    flaky = FlakyStore(tmp_path, failures=2)
    recorder = Recorder(flaky, batch_size=100)
    for seq in range(5):  # queued before the start: one batch
        recorder.submit(record(seq, frame=None))
    recorder.start()
    deadline = time.monotonic() + 60  # a busy machine may start the thread late
    while recorder.failed == 0:  # 99 must come after the first batch was given up on
        assert time.monotonic() < deadline, "the first batch never failed"
        time.sleep(0.01)
    recorder.submit(record(99, frame=None))
    recorder.stop()
    assert (recorder.recorded, recorder.failed) == (1, 5)
    assert seqs(flaky) == [99]
    flaky.close()


def test_a_broken_store_at_stop_is_counted_once_not_a_traceback_per_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = FlakyStore(tmp_path, failures=10**9)
    recorder = Recorder(broken, batch_size=10)
    for seq in range(500):
        recorder.submit(record(seq, frame=None))
    with caplog.at_level(logging.INFO):
        recorder.start()
        started = time.monotonic()
        assert recorder.stop()
    assert time.monotonic() - started < 5
    assert (recorder.recorded, recorder.failed, recorder.pending()) == (0, 500, 0)
    assert sum(1 for r in caplog.records if r.exc_info) <= 1
    assert "more records not written" in caplog.text
    broken.close()


def test_recorder_applies_the_policy(tmp_path: Path) -> None:
    flaky = FlakyStore(tmp_path, failures=0)
    policy = RetentionPolicy(pass_sample_rate=0.0, keep_days=1)
    recorder = Recorder(flaky, policy, retention_interval_s=0.05)
    recorder.start()
    recorder.submit(record(1, "pass", inspected_ns=time.time_ns()))
    recorder.submit(record(2, "reject", inspected_ns=time.time_ns()))
    recorder.submit(record(3, "pass", inspected_ns=time.time_ns() - 2 * DAY))
    time.sleep(0.3)
    recorder.submit(record(4, "pass", inspected_ns=time.time_ns()))  # wakes it for retention
    time.sleep(0.3)
    recorder.stop()
    assert flaky.retentions >= 2
    assert seqs(flaky) == [1, 2, 4]  # the old pass went, with keep_days
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
    recorder = Recorder(store, batch_size=8)
    recorder.start()
    started = time.monotonic()
    for seq in range(200):
        recorder.submit(record(seq, frame=None))
    assert time.monotonic() - started < 0.5
    time.sleep(0.1)
    assert recorder.pending() > 100 and recorder.lag_s() >= 0.1
    gate.set()
    recorder.stop()
    assert store.count() == 200
    assert recorder.max_lag_s >= 0.1 and recorder.lag_s() == 0.0


@pytest.mark.parametrize("hostile", [
    {"camera": ".."}, {"camera": "cam1\n"}, {"part_id": "\ud800"}, {"inspected_ns": 2**63},
    {"captured_ns": -1}, {"verdict": "maybe"},
])
def test_a_record_the_store_refuses_costs_no_other_verdict(
    store: Store, hostile: dict[str, Any],
) -> None:
    recorder = Recorder(store)
    recorder.start()
    recorder.submit(record(1, camera="cam2"))
    recorder.submit(record(2, **hostile))
    recorder.submit(record(3, camera="cam2"))
    recorder.stop()
    assert recorder.failed == 1 and recorder.recorded == 2
    assert [seq for seq, _, _ in _rows(store)] == [1, 3]
