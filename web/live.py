"""Live view: the newest frame per camera as an MJPEG stream, with an optional heatmap.

Frames come from the running pipeline's preview (references to the last result,
no copies). Each stream encodes at most ``LIVE_FPS`` frames a second, only when
a new frame arrived, at most ``MAX_SIDE`` pixels on a side, and at most
``MAX_STREAMS`` run at once, so the view costs a bounded share of the CPU however
large the frames and however many people watch (docs/benchmarks.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import cv2
from flask import Blueprint, Response, abort, current_app, render_template, request

from inspector.imaging import heatmap_overlay, thumbnail
from web.auth import login_required

bp = Blueprint("live", __name__)
LIVE_FPS = 5.0
MAX_SIDE = 800
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
    """One JPEG of the frame (with the heatmap when asked), at most ``MAX_SIDE`` pixels
    wide or high: a screen shows no more, and the cost stays the same for 5 MP frames."""
    image = thumbnail(frame, MAX_SIDE)
    if overlay and anomaly_map is not None:
        heat = cv2.resize(anomaly_map, (image.shape[1], image.shape[0]),
                          interpolation=cv2.INTER_AREA)
        image = heatmap_overlay(image, heat, low, high)
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
