"""The result channel (PUB/SUB): one JSON document per verdict, topic = camera id.

The publishing end binds; a PLC bridge, an MQTT forwarder or the UI subscribes. PUB
never blocks: a slow subscriber loses messages, the line never waits for it.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import zmq

from inspector.bus import open_socket

logger = logging.getLogger(__name__)


class ResultPublisher:
    """Publishes one JSON document per result, topic = camera id (subscribers filter by it).

    Safe to call from several threads (ZeroMQ sockets themselves are not).
    """

    def __init__(self, endpoint: str, context: zmq.Context | None = None, hwm: int = 1000) -> None:
        self.endpoint = endpoint
        self._socket = open_socket(
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
        self._socket = open_socket(context or zmq.Context.instance(), zmq.SUB, endpoint, False)
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
