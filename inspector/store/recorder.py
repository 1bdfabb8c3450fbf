"""The recorder thread: takes verdicts from the inspection loop and writes them in batches.

Group commit: ``submit`` puts the record on a bounded queue and returns at once; the thread
takes everything queued (up to ``batch_size``) and writes it with one
``Store.add_inspections`` call: the batch's image files are written, fsynced in one round
and renamed, then every row is committed in one SQLite transaction (one WAL fsync). No
batch waits for more records to arrive, so under load batches grow and the cost per record
falls, and a verdict is on disk about one batch write after it was submitted.

When the recorder falls behind (the bound, and exactly what is given up):

- A pass whose pictures the store would not keep anyway (outside the pass sample) loses its
  frame at ``submit``: it holds no memory and costs one row.
- Pictures wait at most ``max_image_wait_s``, and at most ``max_pending_images`` queued
  records hold pictures. A record with pictures that arrives while the oldest queued
  record is older than that, or while that many hold pictures, is queued without them;
  its verdict row is still written. A reject or error takes the place of the newest
  queued pass with pictures instead, when there is one, so rejects keep their pictures
  longest. Each counts in ``shed``. So the queue never holds more than about
  ``max_image_wait_s`` of image work, which is what bounds how long a verdict waits.
- At most ``max_pending`` records are queued in all. A record beyond that (the store has
  not written for a long while) is not written: it counts in ``dropped``, is logged and
  raises ``alarm``. A verdict row is never dropped silently.

``pending()``, ``high_water``, ``lag_s()`` and ``max_lag_s`` say how far behind it is.
``stop`` writes everything still queued (logging progress) and returns once the thread has
ended; if the store keeps failing meanwhile, what is left counts in ``failed`` and is logged
once. The store must stay open until ``stop`` has returned True.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque

from inspector.logs import RateLimitedLog
from inspector.store.images import keeps_images
from inspector.store.records import InspectionRecord, check_record
from inspector.store.retention import RetentionPolicy
from inspector.store.store import Store
from inspector.threads import lower_priority

logger = logging.getLogger(__name__)

_IDLE_WAIT_S = 0.5  # an idle thread wakes this often (retention)
_RETRY_PAUSE_S = 0.05
_LOW_SPACE_RETENTION_S = 2.0  # while space is low, retention runs at most this often
_PROGRESS_S = 5.0  # stop() logs the drain's progress this often


class _Item:
    __slots__ = ("heavy", "record", "submitted", "taken")

    def __init__(self, record: InspectionRecord, heavy: bool) -> None:
        self.submitted = time.monotonic()
        self.record = record
        self.heavy = heavy  # still holds pictures to write
        self.taken = False  # taken off the queue by the thread


def _without_images(record: InspectionRecord) -> InspectionRecord:
    return dataclasses.replace(record, frame=None, anomaly_map=None)


class Recorder(threading.Thread):
    """Writes submitted records to a ``Store``; see the module docstring for the bounds.

    Counters: ``recorded`` (rows written), ``failed`` (given up on: the store failed),
    ``shed`` (written without their pictures to keep up), ``dropped`` (not written: the
    queue was full, or submitted after the recorder stopped), ``high_water`` (most records
    pending at once), ``max_lag_s`` (longest submit-to-commit time of any record).
    """

    def __init__(
        self,
        store: Store,
        retention: RetentionPolicy | None = None,
        batch_size: int = 256,
        max_pending: int = 10_000,
        max_pending_images: int = 32,
        max_image_wait_s: float = 0.25,
        retention_interval_s: float = 60.0,
        niceness: int = 0,
    ) -> None:
        # Not a daemon: the interpreter waits for the queue to be written out.
        super().__init__(name="recorder", daemon=False)
        for name, value in (("batch_size", batch_size), ("max_pending", max_pending)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if max_pending_images < 0:
            raise ValueError(f"max_pending_images must be >= 0, got {max_pending_images}")
        if max_image_wait_s <= 0:
            raise ValueError(f"max_image_wait_s must be > 0, got {max_image_wait_s}")
        if retention_interval_s <= 0:
            raise ValueError(f"retention_interval_s must be > 0, got {retention_interval_s}")
        self.store = store
        self.retention = retention
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.max_pending_images = max_pending_images
        self.max_image_wait_s = max_image_wait_s
        self.retention_interval_s = retention_interval_s
        self.niceness = niceness
        self.recorded = 0  # recorded/failed/max_lag_s: changed by this thread only
        self.failed = 0
        self.max_lag_s = 0.0
        self.shed = 0  # shed/dropped/high_water: changed under _cond by submit
        self.dropped = 0
        self.high_water = 0
        self._rate = 1.0 if retention is None else retention.pass_sample_rate
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._heavy = 0  # queued items with pictures
        self._heavy_passes: deque[_Item] = deque()  # queued passes with pictures, oldest first
        self._in_flight: list[_Item] = []
        self._stop_requested = False
        self._closed = False  # the thread has taken its last batch: submit() drops
        self._failing = 0  # batches failed in a row
        self._alarm: str | None = None
        self._log = RateLimitedLog(logger, interval_s=10.0)

    # --- the inspection side -----------------------------------------------------------

    def submit(self, record: InspectionRecord) -> None:
        """Queue one record; never blocks on the store (see the module docstring)."""
        if record.frame is not None and not keeps_images(record, self._rate):
            record = _without_images(record)  # the store would not keep its pictures
        with self._cond:
            if self._closed or len(self._queue) >= self.max_pending:
                self._drop(record)
                return
            heavy = record.frame is not None
            if heavy and (self._heavy >= self.max_pending_images or (
                    self._queue and time.monotonic() - self._queue[0].submitted
                    > self.max_image_wait_s)):
                heavy = self._make_room(record)
                if not heavy:
                    record = _without_images(record)
            item = _Item(record, heavy)
            self._queue.append(item)
            if heavy:
                self._heavy += 1
                if record.verdict == "pass":
                    self._heavy_passes.append(item)
            self.high_water = max(self.high_water, len(self._queue) + len(self._in_flight))
            self._cond.notify()

    def _drop(self, record: InspectionRecord) -> None:
        """Not written at all; called under _cond."""
        self.dropped += 1
        if self._closed:
            why = "the recorder has stopped"
        else:
            why = f"{len(self._queue)} records are queued, the limit"
            self._alarm = f"recorder backlog: {self.dropped} verdicts not recorded"
        self._log.warning("dropped", "verdict of %s seq %s NOT recorded: %s (%d so far)",
                          record.camera, record.seq, why, self.dropped)

    def _make_room(self, record: InspectionRecord) -> bool:
        """Over the picture bound: shed the pictures of the newest queued pass for a reject
        or error (True: ``record`` keeps its own), else ``record``'s (False)."""
        self.shed += 1
        if self._alarm is None:
            self._alarm = "recorder backlog: storing verdicts without images"
        self._log.warning("shed", "recorder behind (%d records queued): storing verdicts "
                          "without images (%d so far)", len(self._queue), self.shed)
        if record.verdict == "pass":
            return False
        while self._heavy_passes:
            victim = self._heavy_passes.pop()
            if victim.heavy and not victim.taken:
                victim.record, victim.heavy = _without_images(victim.record), False
                self._heavy -= 1
                return True
        return False

    def pending(self) -> int:
        """Records submitted and not yet written (queued or in the batch being written)."""
        with self._cond:
            return len(self._queue) + len(self._in_flight)

    def lag_s(self) -> float:
        """Age of the oldest record not yet written; 0 when none."""
        with self._cond:
            oldest = self._in_flight[0] if self._in_flight else (
                self._queue[0] if self._queue else None)
            return 0.0 if oldest is None else time.monotonic() - oldest.submitted

    @property
    def alarm(self) -> str | None:
        """``"recorder backlog: ..."`` while verdicts lose pictures or are not recorded."""
        return self._alarm

    def stop(self, timeout: float | None = None) -> bool:
        """Write everything still queued, then end the thread; True once it has ended.

        Waits for as long as the drain takes (``timeout``: at most that long), logging
        progress. False means the thread is still writing: keep the store open.
        """
        with self._cond:
            self._stop_requested = True
            self._cond.notify_all()
        if self.ident is None:  # never started: nothing will write the queue
            with self._cond:
                self._closed = True
                left = len(self._queue)
                self._queue.clear()
                self.failed += left
            if left:
                logger.error("recorder never started; %d records not written", left)
            return True
        started = last = time.monotonic()
        written = self.recorded
        while True:
            wait = _PROGRESS_S
            if timeout is not None:
                wait = min(wait, started + timeout - time.monotonic())
            self.join(max(0.0, wait))
            if not self.is_alive():
                return True
            now = time.monotonic()
            if timeout is not None and now - started >= timeout:
                logger.error("recorder still writing after %.1f s (%d records left); the "
                             "store stays open until it ends", now - started, self.pending())
                return False
            logger.info("recorder draining: %d records left, %d written in the last %.0f s",
                        self.pending(), self.recorded - written, now - last)
            written, last = self.recorded, now

    # --- the recorder thread -------------------------------------------------------------

    def run(self) -> None:
        try:
            self._loop()
        finally:
            if self.pending():  # the store failed while stopping, or a bug ended the loop
                self._abandon()
            with self._cond:
                self._closed = True  # from now on submit() counts what it cannot queue
        logger.info("recorder stopped: %d recorded, %d without images to keep up, "
                    "%d dropped, %d failed", self.recorded, self.shed, self.dropped, self.failed)

    def _loop(self) -> None:
        self._set_priority()
        next_retention = time.monotonic()  # a disk filled while we were down is dealt with first
        next_low_space = 0.0
        while True:
            batch = self._take()
            if batch:
                written = self._write(batch)
                self._done()
                if not written and self._stop_requested:
                    return  # the store fails while stopping: run() counts what is left
            elif self._closed:
                return
            if self.retention is not None and not self._stop_requested:
                now = time.monotonic()
                if now >= next_retention or (self.store.space_low and now >= next_low_space):
                    # Space low: now, not at the next interval; images wait for the room.
                    self._apply_retention(self.retention)
                    next_retention = now + self.retention_interval_s
                    next_low_space = now + _LOW_SPACE_RETENTION_S

    def _take(self) -> list[_Item]:
        """Everything queued, up to batch_size; waits a while for the first record."""
        with self._cond:
            if not self._queue and not self._stop_requested:
                self._cond.wait(_IDLE_WAIT_S)
            count = min(len(self._queue), self.batch_size)
            batch = [self._queue.popleft() for _ in range(count)]
            for item in batch:
                item.taken = True
                self._heavy -= item.heavy
            while self._heavy_passes and self._heavy_passes[0].taken:
                self._heavy_passes.popleft()
            self._in_flight = batch
            if not batch and self._stop_requested:
                self._closed = True
            return batch

    def _done(self) -> None:
        with self._cond:
            self._in_flight = []
            if not self._queue and self._alarm is not None and self._failing == 0:
                logger.info("recorder caught up (%d shed, %d dropped so far); clearing %r",
                            self.shed, self.dropped, self._alarm)
                self._alarm = None

    def _write(self, batch: list[_Item]) -> bool:
        records = self._storable([item.record for item in batch])
        if not records:
            return True
        for attempt in (1, 2):
            try:
                self.store.add_inspections(records, pass_sample_rate=self._rate)
            except Exception as exc:
                if self._failing == 0 and attempt == 1:  # one traceback per failing spell
                    logger.exception("writing %d records failed; retrying once", len(batch))
                else:
                    self._log.warning("write", "writing %d records failed (attempt %d): %s",
                                      len(batch), attempt, exc)
                if attempt == 1:
                    time.sleep(_RETRY_PAUSE_S)
            else:
                self.recorded += len(records)
                self.max_lag_s = max(self.max_lag_s, time.monotonic() - batch[0].submitted)
                if self._failing:
                    logger.info("the store writes again after %d failed batches", self._failing)
                    self._failing = 0
                return True
        self._failing += 1
        self.failed += len(records)
        logger.error("gave up on %d records: the store failed twice (%d failed in all)",
                     len(records), self.failed)
        return False

    def _storable(self, records: list[InspectionRecord]) -> list[InspectionRecord]:
        """The records the store will take: one it would refuse must not sink its batch.
        Checked here, on the recorder's thread, not in ``submit`` on the inspection's."""
        storable = []
        for record in records:
            try:
                check_record(record)
            except ValueError as exc:
                self.failed += 1
                self._log.warning("refused", "record refused, not written: %s", exc)
            else:
                storable.append(record)
        return storable

    def _abandon(self) -> None:
        """The thread ends with records left: count them once, instead of failing them batch
        by batch (a traceback each), and refuse (count) any later submit."""
        with self._cond:
            self._closed = True
            left = len(self._queue) + len(self._in_flight)
            self._queue.clear()
            self._in_flight = []
            self._heavy_passes.clear()
            self._heavy = 0
            self.failed += left
        logger.error("recorder ending with the store failing: %d more records not written "
                     "(%d recorded, %d failed in all)", left, self.recorded, self.failed)

    def _apply_retention(self, policy: RetentionPolicy) -> None:
        try:
            self.store.apply_retention(policy)
        except Exception:
            # Retention must never stop recording; it is tried again next interval.
            logger.exception("retention failed")

    def _set_priority(self) -> None:
        """Apply ``niceness`` to this thread (Linux schedules threads on their own)."""
        if self.niceness and not lower_priority(self.niceness):
            logger.debug("recorder thread keeps its normal priority")
