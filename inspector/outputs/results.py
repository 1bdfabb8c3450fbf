"""The result feed (PUB/SUB): one JSON document per verdict, topic = camera id.

The publishing end binds; other programs subscribe. PUB never blocks: a slow subscriber
loses messages, the line never waits for it. The document is described by
``inspector/outputs/verdict.schema.json``. On ``tcp://`` the feed may be encrypted and
authenticated with CurveZMQ: the box holds a secret key, subscribers know its public key
and, when the config names a folder of client keys, only those clients are let in.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from inspector.bus import open_socket

logger = logging.getLogger(__name__)

# Where a verdict goes: called with (camera id, verdict document) from an inspection worker,
# in each camera's order. It must return at once (hand the document to its own queue or
# thread) and not raise; the service logs and goes on if it does.
Output = Callable[[str, dict[str, Any]], None]
SCHEMA_PATH = Path(__file__).with_name("verdict.schema.json")


def encode(document: dict[str, Any]) -> bytes:
    """A document as every output sends it: compact JSON, UTF-8."""
    return json.dumps(document, separators=(",", ":")).encode()


@dataclass(frozen=True)
class CurveServer:
    """The box's CurveZMQ keys for the result feed, and who may subscribe."""

    public_key: bytes
    secret_key: bytes
    clients: Path | None  # a folder of client public key files; None: any client


def curve_server(bus: Any) -> CurveServer | None:
    """The CurveZMQ set-up a ``BusConfig`` asks for, or None for a plain feed."""
    if bus.results_secret_key is None:
        return None
    public, secret = zmq.auth.load_certificate(bus.results_secret_key)
    if secret is None:
        raise ValueError(f"{bus.results_secret_key} holds no secret key")
    return CurveServer(public, secret, bus.results_clients)


class ResultPublisher:
    """Publishes one JSON document per result, topic = camera id (subscribers filter by it).

    Safe to call from several threads (ZeroMQ sockets themselves are not).
    """

    def __init__(self, endpoint: str, context: zmq.Context | None = None, hwm: int = 1000,
                 curve: CurveServer | None = None) -> None:
        self.endpoint = endpoint
        context = context or zmq.Context.instance()
        self._auth: ThreadAuthenticator | None = None
        options: dict[str, Any] = {"SNDHWM": hwm}
        if curve is not None:
            if curve.clients is not None:  # only the listed clients: a ZAP handler says so
                self._auth = ThreadAuthenticator(context)
                self._auth.start()
                self._auth.configure_curve(domain="*", location=str(curve.clients))
            options |= {"CURVE_SERVER": True, "CURVE_PUBLICKEY": curve.public_key,
                        "CURVE_SECRETKEY": curve.secret_key}
        try:
            self._socket = open_socket(context, zmq.PUB, endpoint, True, **options)
        except BaseException:
            if self._auth is not None:
                self._auth.stop()
            raise
        self._lock = threading.Lock()

    def publish(self, topic: str, document: dict[str, Any]) -> None:
        message = [topic.encode(), encode(document)]
        with self._lock:
            # PUB never blocks: a slow subscriber loses messages, the line never waits for it.
            self._socket.send_multipart(message, flags=zmq.NOBLOCK)

    def close(self) -> None:
        self._socket.close(linger=0)
        if self._auth is not None:
            self._auth.stop()


class ResultSubscriber:
    """Receives published results, optionally only for some topics (camera ids)."""

    def __init__(
        self,
        endpoint: str,
        topics: tuple[str, ...] = ("",),
        context: zmq.Context | None = None,
        server_key: bytes | None = None,
        client_keys: tuple[bytes, bytes] | None = None,
    ) -> None:
        """``server_key`` (the box's public key) and ``client_keys`` (this client's public
        and secret key) subscribe to a CurveZMQ feed."""
        self.endpoint = endpoint
        options: dict[str, Any] = {}
        if server_key is not None:
            public, secret = client_keys or zmq.curve_keypair()
            options = {"CURVE_SERVERKEY": server_key, "CURVE_PUBLICKEY": public,
                       "CURVE_SECRETKEY": secret}
        self._socket = open_socket(context or zmq.Context.instance(), zmq.SUB, endpoint, False,
                                   **options)
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
