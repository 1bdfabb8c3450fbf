"""Live view: the newest frame per camera as an MJPEG stream, with an optional heatmap.

Frames come from the running pipeline's preview (references to the last result,
no copies). Each stream encodes at most ``LIVE_FPS`` frames a second, only when
a new frame arrived, at most ``MAX_SIDE`` pixels on a side, and at most
``MAX_STREAMS`` run at once, so the view costs a bounded share of the CPU however
large the frames and however many people watch (docs/benchmarks.md).

A stream holds its slot only while its body is being sent: from the first frame until
the generator ends, is closed by the server (the viewer left) or fails. A ``HEAD`` or a
request whose body never starts holds none. A viewer refused gets a 503 page with
``Retry-After``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import cv2
from flask import Blueprint, Response, abort, current_app, render_template, request
from werkzeug.exceptions import ServiceUnavailable

from inspector.imaging import heatmap_overlay, thumbnail
from web.auth import login_required

bp = Blueprint("live", __name__)
LIVE_FPS = 5.0
MAX_SIDE = 800
MAX_STREAMS = 4
STREAM_RETRY_S = 10  # a slot frees when a viewer leaves; try again after a few seconds
# Without a new frame the last one is sent again this often: writing is how a viewer that
# went away is noticed (and its slot freed) while the camera is idle.
KEEPALIVE_S = 2.0
BOUNDARY = b"--frame\r\nContent-Type: image/jpeg\r\n\r\n"


class StreamSlots:
    """At most ``size`` streams sending at once (one app's share of the CPU)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.active = 0
        self._lock = threading.Lock()

    def free(self) -> bool:
        with self._lock:
            return self.active < self.size

    def take(self) -> bool:
        with self._lock:
            if self.active >= self.size:
                return False
            self.active += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.active -= 1


@bp.record_once
def _make_slots(state: Any) -> None:
    state.app.extensions["live_slots"] = StreamSlots(MAX_STREAMS)


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
    slots: StreamSlots = current_app.extensions["live_slots"]
    if not slots.free():
        raise ServiceUnavailable(
            f"All {MAX_STREAMS} live views are in use. Close one elsewhere, or try again in "
            f"a few seconds.", retry_after=STREAM_RETRY_S)
    overlay = request.args.get("overlay") == "1"
    scale = live.detector.card.score_scale
    # waitress tells when the viewer has gone (it keeps reading the connection, see
    # web.server); other servers notice at the next write.
    gone = request.environ.get("waitress.client_disconnected", lambda: False)

    def frames() -> Iterator[bytes]:
        # Taken here, when the body starts, not in the view: a HEAD never runs the body.
        if not slots.take():
            return  # the last slot went to another viewer since the check: end at once
        try:
            last, sent_at = None, 0.0
            jpeg = b""
            while not gone():
                latest = live.preview.latest(camera)
                fresh = latest is not None and latest[2] is not last
                if fresh:
                    last = latest[2]
                    jpeg = render_frame(latest[0], latest[1], latest[2], overlay,
                                        scale.low, scale.high)
                if jpeg and (fresh or time.monotonic() - sent_at >= KEEPALIVE_S):
                    sent_at = time.monotonic()
                    yield BOUNDARY + jpeg + b"\r\n"
                time.sleep(1 / LIVE_FPS)
        finally:
            slots.give_back()

    return Response(frames(), mimetype="multipart/x-mixed-replace; boundary=frame")
