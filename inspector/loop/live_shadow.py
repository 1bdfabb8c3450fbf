"""Live shadow: a candidate scores live frames beside the active model for a set time.

Its verdicts are stored as shadow results and never reach the outputs (the line, the
results feed, the panel's counts). It must never make the active model's verdicts late,
so it takes what is left over: one thread at a low CPU priority, one ONNX Runtime thread,
and a queue of ``QUEUE_FRAMES`` frames. A frame that arrives while the queue is full is
not scored by the candidate (``skipped``), never waited for; nor is one that arrives while
inspection's workers were busy ``BUSY_LIMIT`` of the last seconds or more (``yielded``):
near saturation even a low-priority thread's share of the cores and caches makes queued
verdicts late. The share scored says what the comparison covers.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from typing import Any, Protocol

import numpy as np

from inspector.errors import InspectorError
from inspector.model import Detector, LoadedModel
from inspector.threads import lower_priority

logger = logging.getLogger(__name__)

QUEUE_FRAMES = 2  # frames waiting for the candidate; more would only be older
NICENESS = 15  # as background jobs: inspection, capture and the recorder come first
MAX_MINUTES = 24 * 60.0  # a live shadow ends by itself within a day
RECENT_DISAGREEMENTS = 50  # kept in memory for the page
WRITE_EVERY = 50  # shadow results stored in batches of this many
BUSY_LIMIT = 0.6  # inspection's busy share (last seconds) at which the shadow stands aside


class ShadowSink(Protocol):
    """Where shadow results go (``Store.add_shadow_results``)."""

    def add_shadow_results(self, rows: list[tuple]) -> None: ...


class LiveShadow:
    """One candidate beside the active model until ``stop()`` or its time is up.

    ``offer(camera, seq, inspected_ns, frame, active_sha256, active_score, active_verdict)``
    is called by inspection for every scored frame; it never blocks."""

    def __init__(self, candidate: LoadedModel, store: ShadowSink, minutes: float,
                 name: str | None = None, clock: Any = time.monotonic) -> None:
        if not 0 < minutes <= MAX_MINUTES:
            raise InspectorError(f"a live shadow runs for 0-{MAX_MINUTES:g} minutes, "
                                 f"got {minutes:g}")
        self.candidate, self.store, self.name = candidate, store, name or candidate.card.name
        self.minutes, self._clock = minutes, clock
        self.started_ns, self.ends_at = time.time_ns(), clock() + minutes * 60
        self.offered = self.scored = self.skipped = self.yielded = 0
        self.disagreements = self.failed = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_DISAGREEMENTS)
        self.stopped_by: str | None = None
        self._queue: queue.Queue[tuple] = queue.Queue(QUEUE_FRAMES)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._detector = Detector(candidate, threads=1, providers=("cpu",))
        self._thread = threading.Thread(target=self._run, name="live-shadow", daemon=True)

    def start(self) -> LiveShadow:
        self._thread.start()
        logger.info("live shadow of %s for %g min", self.name, self.minutes)
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def offer(self, camera: str, seq: int, inspected_ns: int, frame: np.ndarray,
              active_sha256: str, active_score: float, active_verdict: str,
              busy: float | None = None) -> None:
        """``busy``: inspection's recent busy share; at ``BUSY_LIMIT`` or more the frame is
        left to inspection alone."""
        if self._stop.is_set():
            return
        with self._lock:
            self.offered += 1
            if busy is not None and busy >= BUSY_LIMIT:
                self.yielded += 1
                return
        try:
            self._queue.put_nowait((camera, seq, inspected_ns, frame, active_sha256,
                                    active_score, active_verdict))
        except queue.Full:
            with self._lock:
                self.skipped += 1

    def stop(self, by: str | None = None, timeout_s: float = 10.0) -> None:
        """End it now; what it scored is stored before this returns."""
        if not self._stop.is_set():
            self.stopped_by = by
            self._stop.set()
        self._thread.join(timeout_s)

    def status(self) -> dict[str, Any]:
        with self._lock:
            counts = {"offered": self.offered, "scored": self.scored, "skipped": self.skipped,
                      "yielded": self.yielded, "disagreements": self.disagreements,
                      "failed": self.failed}
            recent = list(self.recent)
        left = max(0.0, self.ends_at - self._clock())
        return {"model": self.name, "sha256": self.candidate.sha256, "minutes": self.minutes,
                "started_ns": self.started_ns, "running": self.running,
                "seconds_left": round(left, 1) if self.running else 0.0,
                "stopped_by": self.stopped_by, **counts,
                "scored_share": counts["scored"] / counts["offered"] if counts["offered"]
                else None, "recent_disagreements": recent[::-1]}

    def _run(self) -> None:
        lower_priority(NICENESS)
        pending: list[tuple] = []
        try:
            while not self._stop.is_set() and self._clock() < self.ends_at:
                try:
                    item = self._queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                row = self._score(item)
                if row is not None:
                    pending.append(row)
                if len(pending) >= WRITE_EVERY:
                    self._write(pending)
        finally:
            self._stop.set()
            self._write(pending)
            logger.info("live shadow of %s ended: %s", self.name,
                        {k: v for k, v in self.status().items() if k in (
                            "offered", "scored", "skipped", "disagreements")})

    def _score(self, item: tuple) -> tuple | None:
        camera, seq, inspected_ns, frame, active_sha, active_score, active_verdict = item
        try:
            prediction = self._detector.predict(frame)
        except InspectorError as exc:  # the candidate cannot take this frame: counted
            with self._lock:
                self.failed += 1
            logger.debug("live shadow: %s", exc)
            return None
        verdict = prediction.verdict
        with self._lock:
            self.scored += 1
            if verdict != active_verdict:
                self.disagreements += 1
                self.recent.append({"camera": camera, "seq": seq, "inspected_ns": inspected_ns,
                                    "active_verdict": active_verdict,
                                    "active_score": active_score, "verdict": verdict,
                                    "score": prediction.score})
        return (camera, seq, inspected_ns, self.candidate.sha256, prediction.score, verdict,
                active_sha, active_score, active_verdict)

    def _write(self, pending: list[tuple]) -> None:
        try:
            self.store.add_shadow_results(list(pending))
        except Exception:  # a full disk must not end the shadow's counting (nor inspection)
            logger.exception("live shadow: storing %d results failed", len(pending))
        pending.clear()
