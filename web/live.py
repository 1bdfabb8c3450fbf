"""Live view: the newest frame per camera as an MJPEG stream, with an optional heatmap,
its latest verdict, and still frames for viewers beyond the stream limit.

Frames come from the running pipeline's preview (references to the last result,
no copies). Each stream encodes at most ``LIVE_FPS`` frames a second, only when
a new frame arrived, at most ``MAX_SIDE`` pixels on a side, and at most
``MAX_STREAMS`` run at once, so the view costs a bounded share of the CPU however
large the frames and however many people watch (docs/benchmarks.md).

A stream holds its slot only while its body is being sent: from the first frame until
the generator ends, is closed by the server (the viewer left) or fails. A ``HEAD`` or a
request whose body never starts holds none. A viewer refused gets a 503 page with
``Retry-After``; the live page then shows that camera as a still frame (``/live/<camera>.jpg``)
refreshed every ``STILL_REFRESH_S`` and says why, and tries the stream again once a slot
is free. Stills cost at most one encoding per camera and heatmap setting per
``STILL_MIN_AGE_S``, however many viewers ask (``Stills``).

The verdict, score and threshold shown on each camera come from the same preview
(``/live/status``): the result of the last inspection, never a new one.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import cv2
from flask import Blueprint, Response, abort, current_app, jsonify, render_template, request
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
# A viewer without a stream slot sees a still this often: enough to follow the line,
# a small fraction of a stream's requests.
STILL_REFRESH_S = 3
# A still younger than this is served again rather than encoded anew, so N viewers of one
# camera cost one encoding a second, not N.
STILL_MIN_AGE_S = 1.0
STILL_CAMERAS = 64  # cameras whose stills are cached when the preview states no cap
# The page asks for the verdicts this often: a word that changes at most once a second can
# be read from across the line; a 15 fps flicker cannot.
STATUS_POLL_S = 1.0
# A camera whose latest result is older than this is marked as such: an idle camera's last
# PASS must not read as the part in front of it now.
STALE_S = 5.0


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


class Stills:
    """Still JPEGs of the preview's latest frames, cached per (camera, heatmap).

    An entry is encoded again only when the frame changed and the one held is at least
    ``min_age_s`` old; one lock serialises encodings, so stills use at most one core's
    share however many viewers poll. At most ``max_entries`` are kept (the oldest used
    goes first): with the preview's cap on cameras, memory stays bounded too.
    """

    def __init__(self, max_entries: int, min_age_s: float = STILL_MIN_AGE_S) -> None:
        self.max_entries = max_entries
        self.min_age_s = min_age_s
        self.encoded = 0  # encodings done, for tests and curiosity
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, bool], tuple[object, float, bytes]] = OrderedDict()

    def get(self, camera: str, overlay: bool, latest: tuple[Any, Any, dict],
            low: float, high: float) -> bytes:
        key = (camera, overlay)
        now = time.monotonic()
        with self._lock:
            held = self._cache.get(key)
            if held is not None and (held[0] is latest[2] or now - held[1] < self.min_age_s):
                self._cache.move_to_end(key)
                return held[2]
            jpeg = render_frame(latest[0], latest[1], latest[2], overlay, low, high)
            self.encoded += 1
            self._cache[key] = (latest[2], now, jpeg)
            self._cache.move_to_end(key)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
            return jpeg


@bp.record_once
def _make_slots(state: Any) -> None:
    state.app.extensions["live_slots"] = StreamSlots(MAX_STREAMS)
    # Two stills (with and without heatmap) per camera the preview may hold.
    preview = getattr(state.app.extensions.get("live"), "preview", None)
    cameras = getattr(preview, "max_cameras", STILL_CAMERAS)
    state.app.extensions["live_stills"] = Stills(2 * cameras)


def camera_status(document: dict[str, Any], now_ns: int) -> dict[str, Any]:
    """What the live page shows over a camera's image: its latest verdict, score and
    threshold (from the result the preview holds), and how old that result is."""
    inspected = document.get("inspected_ns")
    age = None if inspected is None else max(0.0, (now_ns - inspected) / 1e9)
    return {
        "verdict": document.get("verdict"),
        "reject": document.get("reject"),  # what the gate did (an error is a reject when fail-safe)
        "score": document.get("score"),
        "threshold": document.get("threshold"),
        "error": document.get("error"),
        "seq": document.get("seq"),
        "part_id": document.get("part_id"),
        "age_s": None if age is None else round(age, 1),
        "stale": age is not None and age > STALE_S,
    }


def _statuses(live: Any) -> dict[str, dict[str, Any]]:
    now = time.time_ns()
    out = {}
    for camera in live.preview.cameras():
        latest = live.preview.latest(camera)
        if latest is not None:
            out[camera] = camera_status(latest[2], now)
    return out


@bp.get("/live")
@login_required()
def page() -> Any:
    live = current_app.extensions["live"]
    statuses = _statuses(live) if live is not None else {}
    return render_template(
        "live.html", cameras=sorted(statuses), statuses=statuses, available=live is not None,
        overlay=request.args.get("overlay") == "1", max_streams=MAX_STREAMS,
        still_refresh_s=STILL_REFRESH_S, retry_s=STREAM_RETRY_S, poll_s=STATUS_POLL_S)


@bp.get("/live/status")
@login_required()
def status() -> Any:
    """Each camera's latest verdict, and how many of the live streams are in use."""
    live = current_app.extensions["live"]
    slots: StreamSlots = current_app.extensions["live_slots"]
    return jsonify(cameras=_statuses(live) if live is not None else {},
                   streams={"active": slots.active, "max": slots.size},
                   still_refresh_s=STILL_REFRESH_S)


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


@bp.get("/live/<camera>.jpg")
@login_required()
def still(camera: str) -> Any:
    """The camera's latest frame as one JPEG: for a viewer the stream limit turned away."""
    live = current_app.extensions["live"]
    latest = live.preview.latest(camera) if live is not None else None
    if latest is None:
        abort(404)
    scale = live.detector.card.score_scale
    jpeg = current_app.extensions["live_stills"].get(
        camera, request.args.get("overlay") == "1", latest, scale.low, scale.high)
    response = Response(jpeg, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "private, no-store"
    return response


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
