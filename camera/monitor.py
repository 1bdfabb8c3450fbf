"""``inspector capture``: run the configured cameras into a counting receiver, or forward
their frames to the box that inspects them.

It proves the capture half of the appliance on its own: frames travel the real
bus and every one is accounted for (captured = published + dropped at the
camera, received + malformed at the receiver). With ``forward`` there is no local
receiver: the cameras send to ``bus.frames`` on another host (``tcp://``), where
``inspector run`` takes them as ``type = "remote"`` cameras.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
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
    forward: bool = False,
) -> dict[str, dict[str, Any]]:
    """Run until ``stop_event`` (or ``duration_s``, or every source finished); return the
    totals. ``forward``: send to the inspecting box at ``bus.frames`` instead of a local
    receiver (frames queue at most ``bus.send_hwm`` per camera while it is away; the rest
    are dropped at capture and counted)."""
    context = zmq.Context()
    receiver = None if forward else FrameReceiver(
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
            if receiver is None:
                stop_event.wait(0.05)
            else:
                receiver.recv(timeout_ms=50)
            now = time.monotonic()
            if duration_s is not None and now - started >= duration_s:
                break
            if now - last_report >= interval_s:
                # receiver counts first: read after the cameras', received could pass published
                received, malformed = _receiver_counts(receiver)
                for camera, counts in group.stats().items():
                    rate = (counts["captured"] - last_captured[camera]) / (now - last_report)
                    line = _report_line(camera, counts, received[camera], malformed[camera], rate)
                    print(f"[{now - started:7.1f}s] {line}", file=out, flush=True)
                    last_captured[camera] = counts["captured"]
                last_report = now
    finally:
        stuck = group.stop()
        if receiver is not None:
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
    stats: dict[str, dict[str, Any]], receiver: FrameReceiver | None
) -> dict[str, dict[str, Any]]:
    """Camera-side and receiver-side counters side by side, per camera (the receiver's are
    None when forwarding: they are counted on the inspecting box)."""
    received, malformed = _receiver_counts(receiver)
    totals: dict[str, dict[str, Any]] = {}
    for camera, counts in stats.items():
        totals[camera] = {
            key: counts[key]
            for key in ("captured", "published", "dropped", "reconnects", "read_errors", "state")
        }
        totals[camera]["received"] = received[camera]
        totals[camera]["malformed"] = malformed[camera]
    return totals


def _receiver_counts(receiver: FrameReceiver | None) -> tuple[Any, Any]:
    if receiver is None:
        return defaultdict(lambda: None), defaultdict(lambda: None)
    return receiver.received.copy(), receiver.malformed.copy()


def _report_line(
    camera: str, counts: dict[str, Any], received: int, malformed: int, rate: float
) -> str:
    age = counts["last_frame_age_s"]
    return (
        f"{camera:<12} {rate:7.1f} fps  captured {counts['captured']}"
        f"  published {counts['published']}  dropped {counts['dropped']}"
        f"  received {'-' if received is None else received}"
        f"  malformed {'-' if malformed is None else malformed}"
        f"  reconnects {counts['reconnects']}  age {'-' if age is None else f'{age:.2f}s'}"
        f"  {counts['state']}"
    )
