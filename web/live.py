"""Live view: the newest frame per camera as an MJPEG stream, with an optional heatmap.

Frames come from the running pipeline's preview (references to the last result,
no copies). Each stream encodes at most ``LIVE_FPS`` frames a second and only
when a new frame arrived, and at most ``MAX_STREAMS`` run at once, so the view
costs a bounded share of the CPU however many people watch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import cv2
from flask import Blueprint, Response, abort, current_app, render_template, request

from inspector.overlay import heatmap_overlay
from web.auth import login_required

bp = Blueprint("live", __name__)
LIVE_FPS = 5.0
MAX_STREAMS = 4
_streams = threading.BoundedSemaphore(MAX_STREAMS)


@bp.get("/live")
@login_required()
def page() -> Any:
    live = current_app.extensions["live"]
    cameras = live.preview.cameras() if live is not None else []
    return render_template("live.html", cameras=cameras, available=live is not None)


def render_frame(frame: Any, anomaly_map: Any, document: dict, overlay: bool,
                 low: float, high: float) -> bytes:
    """One JPEG of the frame (with the heatmap when asked)."""
    image = frame
    if overlay and anomaly_map is not None:
        image = heatmap_overlay(frame, anomaly_map, low, high)
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return buffer.tobytes() if ok else b""


@bp.get("/live/<camera>.mjpg")
@login_required()
def stream(camera: str) -> Any:
    live = current_app.extensions["live"]
    if live is None or live.preview.latest(camera) is None:
        abort(404)
    if not _streams.acquire(blocking=False):
        abort(503, f"at most {MAX_STREAMS} live streams at once")
    overlay = request.args.get("overlay") == "1"
    scale = live.detector.card.score_scale

    def frames() -> Iterator[bytes]:
        last = None
        try:
            while True:
                latest = live.preview.latest(camera)
                if latest is not None and latest[2] is not last:
                    last = latest[2]
                    jpeg = render_frame(latest[0], latest[1], latest[2], overlay,
                                        scale.low, scale.high)
                    yield (b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + jpeg + b"\r\n")
                time.sleep(1 / LIVE_FPS)
        finally:
            _streams.release()

    return Response(frames(), mimetype="multipart/x-mixed-replace; boundary=frame")
