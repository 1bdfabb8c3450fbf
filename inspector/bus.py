"""Typed ZeroMQ channels: frames (PUSH/PULL) and results (PUB/SUB).

The same code runs as threads of one process (``inproc://``, which needs one
shared ``zmq.Context``), as processes on one box (``ipc://``) or across hosts
(``tcp://``). The consuming end of the frame channel and the publishing end of
the result channel bind; cameras and subscribers connect. Every socket is closed
with ``linger=0`` so that shutdown never waits on an absent peer.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import zmq

from inspector.errors import BusError, WireError
from inspector.logs import RateLimitedLog
from inspector.wire import DEFAULT_MAX_FRAME_BYTES, Frame, decode_frame, encode_frame

logger = logging.getLogger(__name__)


def _socket(context: zmq.Context, kind: int, endpoint: str, bind: bool, **options: int) -> Any:
    sock = context.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    for name, value in options.items():
        sock.setsockopt(getattr(zmq, name), value)
    try:
        (sock.bind if bind else sock.connect)(endpoint)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise BusError(f"cannot {'bind' if bind else 'connect'} {endpoint}: {exc}") from exc
    return sock


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
        self._socket = _socket(
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
        self._socket = _socket(
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


class ResultPublisher:
    """Publishes one JSON document per result, topic = camera id (subscribers filter by it).

    Safe to call from several threads (ZeroMQ sockets themselves are not).
    """

    def __init__(self, endpoint: str, context: zmq.Context | None = None, hwm: int = 1000) -> None:
        self.endpoint = endpoint
        self._socket = _socket(
            context or zmq.Context.instance(), zmq.PUB, endpoint, True, SNDHWM=hwm
        )
        self._lock = threading.Lock()

    def publish(self, topic: str, document: dict[str, Any]) -> None:
        message = [topic.encode(), json.dumps(document, separators=(",", ":")).encode()]
        with self._lock:
            # PUB never blocks: a slow subscriber loses messages, the line never waits for it.
            self._socket.send_multipart(message, flags=zmq.NOBLOCK)

    def close(self) -> None:
        self._socket.close(linger=0)


class ResultSubscriber:
    """Receives published results, optionally only for some topics (camera ids)."""

    def __init__(
        self,
        endpoint: str,
        topics: tuple[str, ...] = ("",),
        context: zmq.Context | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._socket = _socket(context or zmq.Context.instance(), zmq.SUB, endpoint, False)
        for topic in topics:
            self._socket.setsockopt(zmq.SUBSCRIBE, topic.encode())

    def recv(self, timeout_ms: int = 100) -> tuple[str, dict[str, Any]] | None:
        """``(topic, document)``, or None on timeout or an unreadable message."""
        if not self._socket.poll(timeout_ms):
            return None
        parts = self._socket.recv_multipart()
        try:
            topic, body = parts
            return topic.decode(), json.loads(body)
        except (ValueError, UnicodeDecodeError):
            logger.warning("ignored an unreadable result message of %d parts", len(parts))
            return None

    def close(self) -> None:
        self._socket.close(linger=0)


class TriggerReceiver:
    """Software triggers from a PLC bridge or line controller: JSON ``{"camera", "part_id"}``.

    Bad messages are counted in ``malformed`` and skipped.
    """

    def __init__(self, endpoint: str, context: zmq.Context | None = None) -> None:
        self.endpoint = endpoint
        self.malformed = 0
        self._socket = _socket(context or zmq.Context.instance(), zmq.PULL, endpoint, True)
        self._log = RateLimitedLog(logger)

    def recv(self, timeout_ms: int = 100) -> tuple[str, str | None] | None:
        """``(camera, part_id)`` of the next valid trigger, or None."""
        if not self._socket.poll(timeout_ms):
            return None
        parts = self._socket.recv_multipart()
        try:
            (body,) = parts
            message = json.loads(body)
            camera, part_id = message["camera"], message.get("part_id")
            if not isinstance(camera, str) or not (part_id is None or isinstance(part_id, str)):
                raise TypeError("camera must be a string, part_id a string or null")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.malformed += 1
            self._log.warning("trigger", "dropped malformed trigger: %s", exc)
            return None
        return camera, part_id

    def close(self) -> None:
        self._socket.close(linger=0)


def send_trigger(
    endpoint: str, camera: str, part_id: str | None = None, context: zmq.Context | None = None
) -> None:
    """Send one software trigger (for scripts and PLC bridges); waits up to 1 s to deliver it."""
    sock = _socket(context or zmq.Context.instance(), zmq.PUSH, endpoint, False)
    try:
        sock.send(json.dumps({"camera": camera, "part_id": part_id}).encode())
    finally:
        sock.close(linger=1000)
