"""Software triggers (PUSH/PULL): one JSON message ``{"camera", "part_id"}`` per part to capture."""

from __future__ import annotations

import json
import logging

import zmq

from inspector.bus.sockets import open_socket
from inspector.logs import RateLimitedLog

logger = logging.getLogger(__name__)


class TriggerReceiver:
    """Software triggers from a PLC bridge or line controller: JSON ``{"camera", "part_id"}``.

    Bad messages are counted in ``malformed`` and skipped.
    """

    def __init__(self, endpoint: str, context: zmq.Context | None = None) -> None:
        self.endpoint = endpoint
        self.malformed = 0
        self._socket = open_socket(context or zmq.Context.instance(), zmq.PULL, endpoint, True)
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
    sock = open_socket(context or zmq.Context.instance(), zmq.PUSH, endpoint, False)
    try:
        sock.send(json.dumps({"camera": camera, "part_id": part_id}).encode())
    finally:
        sock.close(linger=1000)
