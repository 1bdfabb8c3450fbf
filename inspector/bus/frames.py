"""The frame channel (PUSH/PULL): cameras send, the inspector receives and validates.

The consuming end binds and cameras connect. A sender never blocks (a full queue is a
counted drop); the receiver never raises on a bad message (it is counted and dropped).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import zmq

from inspector.bus.sockets import open_socket
from inspector.bus.wire import DEFAULT_MAX_FRAME_BYTES, Frame, decode_frame, encode_frame
from inspector.errors import WireError
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


class FrameReceiver:
    """The inspector's end of the frame channel: validates every message, drops bad ones.

    ``received`` counts valid frames per camera, ``malformed`` counts rejected
    messages per camera (``"?"`` when the header was unreadable).
    """

    def __init__(
        self,
        endpoint: str,
        context: zmq.Context | None = None,
        hwm: int = 16,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        bind: bool = True,
    ) -> None:
        self.endpoint = endpoint
        self.max_frame_bytes = max_frame_bytes
        self.received: Counter[str] = Counter()
        self.malformed: Counter[str] = Counter()
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
        # Under load a frame is usually waiting: take it without paying for a poll.
        try:
            return self._socket.recv_multipart(flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            pass
        if not self._socket.poll(timeout_ms):
            return None
        return self._socket.recv_multipart(copy=False)

    def _decode(self, parts: list[Any]) -> Frame | None:
        try:
            frame = decode_frame(parts, self.max_frame_bytes)
        except WireError as exc:
            camera = _camera_hint(parts)
            self.malformed[camera] += 1
            self._log.warning(camera, "dropped malformed frame from camera %s: %s", camera, exc)
            return None
        self.received[frame.header.camera] += 1
        return frame

    def close(self) -> None:
        self._socket.close(linger=0)


def _camera_hint(parts: list[Any]) -> str:
    """Best-effort camera id of a rejected message, for per-camera accounting."""
    try:
        camera = json.loads(bytes(parts[0].buffer))["camera"]
    except Exception:  # any garbage: the message is already known to be bad
        return "?"
    return camera if isinstance(camera, str) and 0 < len(camera) <= 64 else "?"
