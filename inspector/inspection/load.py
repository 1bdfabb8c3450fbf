"""How busy the inspection workers are: the signal that the box cannot keep up."""

from __future__ import annotations

import threading
import time

CAPACITY_WINDOW_S = 10.0
SATURATED = 0.95  # share of worker time spent inspecting that means the box is full


class WorkerLoad:
    """How long the workers waited for frames, per second of the clock, for the last
    minute: the share of time they were busy says whether the box keeps up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._idle: dict[int, float] = {}  # whole second -> worker-seconds spent waiting

    def idle(self, seconds: float) -> None:
        second = int(time.monotonic())
        with self._lock:
            self._idle[second] = self._idle.get(second, 0.0) + seconds
            if len(self._idle) > 60:
                del self._idle[min(self._idle)]

    def busy_share(self, workers: int, window_s: float) -> float | None:
        """Busy share over the last ``window_s`` (None before a full second has passed)."""
        now = time.monotonic()
        if now - self._started < 1.0:
            return None
        # Whole seconds: from the start of the second the window begins in, to now.
        first = int(max(now - window_s, self._started))
        span = now - max(first, self._started)
        with self._lock:
            idle = sum(v for k, v in self._idle.items() if k >= first)
        return min(1.0, max(0.0, 1.0 - idle / (workers * span)))
