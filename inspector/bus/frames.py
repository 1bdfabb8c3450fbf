"""The frame channel (PUSH/PULL): cameras send, the inspector receives and validates.

The consuming end binds and cameras connect. A sender never blocks (a full queue is a
counted drop); the receiver never raises on a bad message (it is counted and dropped).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import zmq

from inspector.bus.sockets import open_socket
from inspector.bus.wire import (
    DEFAULT_MAX_FRAME_BYTES,
    MAX_HEADER_BYTES,
    Frame,
    decode_frame,
    encode_frame,
)
from inspector.errors import WireError
from inspector.identifiers import check_camera_id
from inspector.logs import RateLimitedLog

logger = logging.getLogger(__name__)


class FrameSender:
    """One camera's end of the frame channel. ``send`` never blocks: a full queue is a drop."""

    def __init__(
        self,
        endpoint: str,
        context: zmq.Context | None = None,
        hwm: int = 4,
        bind: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self._socket = open_socket(
            context or zmq.Context.instance(), zmq.PUSH, endpoint, bind, SNDHWM=hwm
        )

    def send(
        self,
        image: np.ndarray,
        camera: str,
        seq: int,
        ts_ns: int,
        part_id: str | None = None,
        encoding: str = "raw",
        jpeg_quality: int = 90,
    ) -> bool:
        """Queue one frame; False when the consumer is behind and the frame was dropped."""
        parts = encode_frame(image, camera, seq, ts_ns, part_id, encoding, jpeg_quality)
        return self.send_parts(parts)

    def send_parts(self, parts: list[Any]) -> bool:
        """Queue pre-built message parts (zero-copy); False when dropped."""
        try:
            self._socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        return True

    def wait_ready(self, timeout_ms: int) -> bool:
        """True once the queue has room for a frame, False after ``timeout_ms``: for senders
        that would rather wait than drop, such as a benchmark keeping the inspector busy."""
        return bool(self._socket.poll(timeout_ms, zmq.POLLOUT))

    def close(self, linger_ms: int = 0) -> None:
        """Close; frames still queued get ``linger_ms`` to reach a live receiver."""
        self._socket.close(linger=linger_ms)


UNKNOWN = "?"  # the accounting key of messages whose camera is unreadable or not admitted
MAX_UNKNOWN_CAMERAS = 8


class FrameReceiver:
    """The inspector's end of the frame channel: validates every message, drops bad ones.

    ``received`` counts valid frames per camera, ``malformed`` counts rejected
    messages per camera (``"?"`` when the header was unreadable or named a camera that
    was not admitted). Cameras in ``known_cameras`` are always admitted; besides them at
    most ``max_unknown_cameras`` other ids are, first come first served, so made-up ids
    cannot grow any per-camera state (counters here, verdict queues and previews
    downstream) without bound. Frames of further ids are counted as malformed.
    """

    def __init__(
        self,
        endpoint: str,
        context: zmq.Context | None = None,
        hwm: int = 16,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        bind: bool = True,
        known_cameras: Iterable[str] = (),
        max_unknown_cameras: int = MAX_UNKNOWN_CAMERAS,
    ) -> None:
        self.endpoint = endpoint
        self.max_frame_bytes = max_frame_bytes
        self.received: Counter[str] = Counter()
        self.malformed: Counter[str] = Counter()
        self.known_cameras = frozenset(known_cameras)
        self.max_unknown_cameras = max_unknown_cameras
        self._admitted: set[str] = set()  # unknown ids let in so far
        # Refuse oversized messages inside libzmq, before they are buffered.
        self._socket = open_socket(
            context or zmq.Context.instance(),
            zmq.PULL,
            endpoint,
            bind,
            RCVHWM=hwm,
            MAXMSGSIZE=max_frame_bytes + 1024 * 1024,
        )
        self._log = RateLimitedLog(logger)

    def recv(self, timeout_ms: int = 100) -> Frame | None:
        """The next valid frame, or None when none arrived within ``timeout_ms``.

        Malformed messages are counted, logged (rate-limited) and skipped; they
        never raise.
        """
        parts = self._next(timeout_ms)
        return None if parts is None else self._decode(parts)

    def drain(self, quiet_ms: int = 300) -> Iterator[Frame]:
        """Yield the valid frames still arriving, until the channel is quiet for ``quiet_ms``."""
        while (parts := self._next(quiet_ms)) is not None:
            frame = self._decode(parts)
            if frame is not None:
                yield frame

    def _next(self, timeout_ms: int) -> list[Any] | None:
        # Fairness between cameras: ZeroMQ takes turns only among the cameras it knows
        # have frames, and learns that a camera which ran dry has frames again from a
        # notice it reads only now and then; meanwhile the other camera gets every turn
        # (126 against 77 frames in 3 s at 2x overload). Asking for the socket's events
        # reads those notices first, so every camera with a frame waiting is in the turn.
        self._socket.getsockopt(zmq.EVENTS)
        # Under load a frame is usually waiting: take it without paying for a poll.
        try:
            return self._socket.recv_multipart(flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            pass
        if not self._socket.poll(timeout_ms):
            return None
        return self._socket.recv_multipart(copy=False)

    def admits(self, camera: str) -> bool:
        """Whether frames of ``camera`` are taken (and its state kept)."""
        return camera in self.known_cameras or camera in self._admitted

    def _admit(self, camera: str) -> bool:
        if self.admits(camera):
            return True
        if len(self._admitted) >= self.max_unknown_cameras:
            self._log.warning("cameras", "refusing frames: more than %d cameras the config "
                              "does not name", self.max_unknown_cameras)
            return False
        self._admitted.add(camera)
        logger.warning("frames from camera %s, which the config does not name", camera)
        return True

    def _decode(self, parts: list[Any]) -> Frame | None:
        try:
            frame = decode_frame(parts, self.max_frame_bytes, admit=self._admit)
        except WireError as exc:
            self._refuse(parts, str(exc))
            return None
        except Exception as exc:  # unforeseen: still one bad message, never a dead worker
            self._refuse(parts, f"unexpected {type(exc).__name__} while decoding")
            return None
        self.received[frame.header.camera] += 1
        return frame

    def _refuse(self, parts: list[Any], reason: str) -> None:
        hint = _camera_hint(parts)
        camera = hint if self.admits(hint) else UNKNOWN
        self.malformed[camera] += 1
        self._log.warning(camera, "dropped malformed frame from camera %s: %s", camera, reason)

    def close(self) -> None:
        self._socket.close(linger=0)


def _camera_hint(parts: list[Any]) -> str:
    """Best-effort camera id of a rejected message, for per-camera accounting."""
    try:
        header = bytes(getattr(parts[0], "buffer", parts[0]))
        if len(header) > MAX_HEADER_BYTES:
            return UNKNOWN
        return check_camera_id(json.loads(header)["camera"])
    except Exception:  # any garbage (RecursionError too): the message is already known bad
        return UNKNOWN
