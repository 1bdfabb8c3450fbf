"""``inspector capture``: run the configured cameras into a counting receiver.

It proves the capture half of the appliance on its own: frames travel the real
bus and every one is accounted for (captured = published + dropped at the
camera, received + malformed at the receiver).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import zmq

from camera.base import FrameSource
from camera.capture import CaptureGroup
from camera.sources import make_source
from inspector.bus import FrameReceiver
from inspector.config import CameraConfig, Config

# After the cameras stop, frames still in flight get this long to arrive.
DRAIN_QUIET_MS = 300


def run_capture(
    config: Config,
    stop_event: threading.Event,
    out: TextIO,
    duration_s: float | None = None,
    interval_s: float = 1.0,
    source_factory: Callable[[CameraConfig], FrameSource] = make_source,
) -> dict[str, dict[str, Any]]:
    """Run until ``stop_event`` (or ``duration_s``, or every source finished); return the totals."""
    context = zmq.Context()
    receiver = FrameReceiver(
        config.bus.frames, context, config.bus.recv_hwm, config.bus.max_frame_bytes
    )
    group = CaptureGroup(
        config.cameras, config.bus.frames, stop_event, context, config.bus.send_hwm, source_factory
    )
    stuck: list[str] = []
    started = time.monotonic()
    try:
        group.start(config.bus.triggers)
        last_report, last_captured = started, dict.fromkeys(group.stats(), 0)
        while not stop_event.is_set() and not group.all_finished():
            receiver.recv(timeout_ms=50)
            now = time.monotonic()
            if duration_s is not None and now - started >= duration_s:
                break
            if now - last_report >= interval_s:
                # receiver counts first: read after the cameras', received could pass published
                received, malformed = receiver.received.copy(), receiver.malformed.copy()
                for camera, counts in group.stats().items():
                    rate = (counts["captured"] - last_captured[camera]) / (now - last_report)
                    line = _report_line(camera, counts, received[camera], malformed[camera], rate)
                    print(f"[{now - started:7.1f}s] {line}", file=out, flush=True)
                    last_captured[camera] = counts["captured"]
                last_report = now
    finally:
        stuck = group.stop()
        for _ in receiver.drain(DRAIN_QUIET_MS):
            pass
        receiver.close()
        if not stuck:  # term() would wait forever on the socket of a thread stuck in a read
            context.term()
    totals = summarize(group.stats(), receiver)
    for camera, counts in totals.items():
        print(json.dumps({"camera": camera, **counts}), file=out, flush=True)
    return totals


def summarize(
    stats: dict[str, dict[str, Any]], receiver: FrameReceiver
) -> dict[str, dict[str, Any]]:
    """Camera-side and receiver-side counters side by side, per camera."""
    totals: dict[str, dict[str, Any]] = {}
    for camera, counts in stats.items():
        totals[camera] = {
            key: counts[key]
            for key in ("captured", "published", "dropped", "reconnects", "read_errors", "state")
        }
        totals[camera]["received"] = receiver.received[camera]
        totals[camera]["malformed"] = receiver.malformed[camera]
    return totals


def _report_line(
    camera: str, counts: dict[str, Any], received: int, malformed: int, rate: float
) -> str:
    age = counts["last_frame_age_s"]
    return (
        f"{camera:<12} {rate:7.1f} fps  captured {counts['captured']}"
        f"  published {counts['published']}  dropped {counts['dropped']}"
        f"  received {received}  malformed {malformed}"
        f"  reconnects {counts['reconnects']}  age {'-' if age is None else f'{age:.2f}s'}"
        f"  {counts['state']}"
    )
