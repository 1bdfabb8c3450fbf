"""Score drift: per camera, the typical part's score now against the one the model was fitted
with, so a changed scene (lighting, a moved camera, new material) raises an alarm before it
turns into a flood of false rejects or a run of escapes.

The fit-time reference is the model card's median good score (``score_scale.low``) and its
threshold. A camera drifts when the median score of its last ``window`` parts has moved
``limit`` of the way from that median to the threshold, up or down; the alarm clears by
itself once the median is back within half that. Defects are a small share of parts, so the
median does not move with them; only a change in what every part looks like moves it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np

from inspector.model import ModelCard

logger = logging.getLogger(__name__)

DRIFT_WINDOW = 200  # parts per camera whose median is "now"
DRIFT_LIMIT = 0.5  # share of the way from the fit-time median to the threshold
CLEAR_SHARE = 0.5  # the alarm clears when the drift is back under this share of the limit


@dataclass(frozen=True)
class Drift:
    """A camera's raised drift alarm."""

    camera: str
    since_ns: int
    median: float
    reference: float
    threshold: float

    def message(self) -> str:
        way = "up" if self.median > self.reference else "down"
        return (f"score drift on {self.camera}: the typical part scores {self.median:.4g} "
                f"(fitted {self.reference:.4g}, threshold {self.threshold:.4g}), {way}; "
                "check the lighting, the camera's position and the material")


class DriftMonitor:
    """Recent scores per camera and the drift alarms they raise; safe to share between
    threads. Holds at most ``max_cameras`` cameras of ``window`` floats each (the service
    admits a bounded set of cameras; the least recently seen is forgotten first)."""

    def __init__(self, window: int = DRIFT_WINDOW, limit: float = DRIFT_LIMIT,
                 max_cameras: int = 64) -> None:
        if window < 4 or not limit > 0:
            raise ValueError(f"window must be >= 4 and limit > 0, got {window}, {limit}")
        self.window, self.limit, self.max_cameras = window, limit, max_cameras
        self.min_parts = max(2, window // 4)  # fewer say nothing yet
        self._lock = threading.Lock()
        self._scores: OrderedDict[str, tuple[str, deque[float]]] = OrderedDict()
        self._raised: dict[str, Drift] = {}

    def observe(self, camera: str, sha256: str, score: float) -> None:
        """One scored part; a new model starts the camera's window afresh."""
        with self._lock:
            entry = self._scores.pop(camera, None)
            if entry is None or entry[0] != sha256:
                entry = (sha256, deque(maxlen=self.window))
                self._raised.pop(camera, None)  # a new model is judged on its own scores
            entry[1].append(score)
            self._scores[camera] = entry
            while len(self._scores) > self.max_cameras:
                forgotten, _ = self._scores.popitem(last=False)
                self._raised.pop(forgotten, None)

    def check(self, card: ModelCard, now_ns: int | None = None) -> list[Drift]:
        """Judge every camera scored by ``card``'s model; returns the raised alarms."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        reference, threshold = card.score_scale.low, card.threshold.value
        headroom = threshold - reference
        with self._lock:
            recent = {camera: np.array(scores) for camera, (sha, scores) in self._scores.items()
                      if sha == card.onnx_sha256 and len(scores) >= self.min_parts}
        if not headroom > 0:  # a card without a usable scale: nothing to judge against
            return []
        for camera, scores in recent.items():
            median = float(np.median(scores))
            share = abs(median - reference) / headroom
            with self._lock:
                raised = self._raised.get(camera)
                if raised is None and share >= self.limit:
                    drift = Drift(camera, now_ns, median, reference, threshold)
                    self._raised[camera] = drift
                    logger.warning("%s", drift.message())
                elif raised is not None and share < self.limit * CLEAR_SHARE:
                    del self._raised[camera]
                    logger.info("score drift on %s cleared: the typical part scores %.4g",
                                camera, median)
                elif raised is not None:
                    self._raised[camera] = Drift(camera, raised.since_ns, median, reference,
                                                 threshold)
        with self._lock:
            return sorted(self._raised.values(), key=lambda d: d.camera)
