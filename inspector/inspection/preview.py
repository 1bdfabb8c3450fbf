"""The live preview: each camera's latest frame, anomaly map and verdict, for the live view."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np


class Preview:
    """The latest frame, map and result per camera, for the live view; references only.

    At most ``max_cameras`` are kept: a camera beyond that replaces the one updated
    longest ago, so frames from ever new camera ids cannot pin memory.
    """

    def __init__(self, max_cameras: int = 64) -> None:
        self.max_cameras = max_cameras
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[np.ndarray, np.ndarray | None, dict[str, Any]]] = {}

    def update(self, camera: str, frame: np.ndarray, anomaly_map: np.ndarray | None,
               document: dict[str, Any]) -> None:
        with self._lock:
            self._latest.pop(camera, None)  # re-inserted last: dicts keep insertion order
            self._latest[camera] = (frame, anomaly_map, document)
            while len(self._latest) > self.max_cameras:
                del self._latest[next(iter(self._latest))]

    def latest(self, camera: str) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]] | None:
        with self._lock:
            return self._latest.get(camera)

    def cameras(self) -> list[str]:
        with self._lock:
            return sorted(self._latest)
