"""The recorder thread: drains on stop, retries, applies the policy, never blocks."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from inspector.store import Recorder, RetentionPolicy, Store

from .conftest import DAY, FlakyStore, record, seqs


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
