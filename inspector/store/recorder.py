"""The recorder thread: takes verdicts from the inspection loop and writes them in batches.

``submit`` only puts the record on an unbounded queue, so the inspection thread never waits
on the disk and no verdict is ever dropped. The thread writes batches (up to ``batch_size``
records, or whatever arrived within ``flush_interval_s``) with one ``Store.add_inspections``
call each, runs retention every ``retention_interval_s`` when given a policy, and on
``stop`` writes everything still queued before it exits.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import cast

from inspector.logs import RateLimitedLog
from inspector.store.records import InspectionRecord
from inspector.store.retention import RetentionPolicy
from inspector.store.store import Store

logger = logging.getLogger(__name__)

_STOP = object()  # queued by stop(): everything submitted before it is written first
_RETRY_PAUSE_S = 0.05


class Recorder(threading.Thread):
    """Writes submitted records to a ``Store``. ``recorded``/``failed`` count records."""

    def __init__(
        self,
        store: Store,
        retention: RetentionPolicy | None = None,
        batch_size: int = 64,
        flush_interval_s: float = 0.2,
        retention_interval_s: float = 60.0,
    ) -> None:
        # Not a daemon: the interpreter waits for the queue to be written out.
        super().__init__(name="recorder", daemon=False)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if flush_interval_s <= 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        if retention_interval_s <= 0:
            raise ValueError(f"retention_interval_s must be > 0, got {retention_interval_s}")
        self.store = store
        self.retention = retention
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retention_interval_s = retention_interval_s
        self.recorded = 0  # records written; only this thread changes the counters
        self.failed = 0  # records given up on after a retry
        self._records: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._stop_requested = threading.Event()
        self._draining = False
        self._late = RateLimitedLog(logger, interval_s=10.0)

    def submit(self, record: InspectionRecord) -> None:
        """Queue one record; never blocks."""
        if self._stop_requested.is_set() and not self.is_alive():
            # Shutdown order is wrong somewhere: nothing will write this any more.
            self._late.warning(
                "late", "recorder stopped; %s seq %s not recorded", record.camera, record.seq
            )
            return
        self._records.put(record)

    def pending(self) -> int:
        """About how many records wait to be written."""
        return self._records.qsize()

    def stop(self, timeout: float = 10.0) -> None:
        """Write everything still queued, then end the thread (waiting up to ``timeout``)."""
        if not self._stop_requested.is_set():
            self._stop_requested.set()
            self._records.put(_STOP)
        if self.ident is None:  # never started: nothing will write the queue
            if self.pending() > 1:
                logger.warning("recorder never started; %d records not written", self.pending())
            return
        self.join(timeout)
        if self.is_alive():
            logger.warning(
                "recorder still writing after %.1f s; %d records queued", timeout, self.pending()
            )

    def run(self) -> None:
        _yield_to_inspection()
        next_retention = time.monotonic()  # a disk filled while we were down is dealt with first
        while True:
            batch = self._collect()
            if batch:
                self._write(batch)
            elif self._draining:
                break  # stop requested and the queue is empty
            if (
                self.retention is not None
                and not self._draining
                and time.monotonic() >= next_retention
            ):
                self._apply_retention(self.retention)
                next_retention = time.monotonic() + self.retention_interval_s
        logger.info("recorder stopped: %d recorded, %d failed", self.recorded, self.failed)

    def _collect(self) -> list[InspectionRecord]:
        """Up to batch_size records: whatever arrives within flush_interval_s of the first."""
        batch: list[InspectionRecord] = []
        deadline: float | None = None
        while len(batch) < self.batch_size:
            try:
                if self._draining:
                    item = self._records.get_nowait()
                else:
                    now = time.monotonic()
                    wait = self.flush_interval_s if deadline is None else deadline - now
                    if wait <= 0:
                        break
                    item = self._records.get(timeout=wait)
            except queue.Empty:
                break
            if item is _STOP:
                self._draining = True
                continue
            batch.append(cast(InspectionRecord, item))
            if deadline is None:
                deadline = time.monotonic() + self.flush_interval_s
        return batch

    def _write(self, batch: list[InspectionRecord]) -> None:
        rate = 1.0 if self.retention is None else self.retention.pass_sample_rate
        for attempt in (1, 2):
            try:
                self.store.add_inspections(batch, pass_sample_rate=rate)
            except Exception:
                if attempt == 1:
                    logger.exception("writing %d records failed; retrying once", len(batch))
                    time.sleep(_RETRY_PAUSE_S)
                else:
                    logger.exception("writing %d records failed again; giving up", len(batch))
            else:
                self.recorded += len(batch)
                return
        self.failed += len(batch)

    def _apply_retention(self, policy: RetentionPolicy) -> None:
        try:
            self.store.apply_retention(policy)
        except Exception:
            # Retention must never stop recording; it is tried again next interval.
            logger.exception("retention failed")


RECORDER_NICENESS = 10


def _yield_to_inspection() -> None:
    """Lower this thread's CPU priority (Linux schedules threads on their own): encoding
    images can wait a few milliseconds, a verdict should not."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), RECORDER_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not permitted: run at normal priority
        logger.debug("recorder thread keeps its normal priority")
