"""Software triggers (PUSH/PULL): one JSON message ``{"camera", "part_id"}`` per part to capture."""

from __future__ import annotations

import json
import logging

import zmq

from inspector.bus.sockets import open_socket
from inspector.identifiers import check_camera_id, check_part_id, shown
from inspector.logs import RateLimitedLog

logger = logging.getLogger(__name__)

MAX_TRIGGER_BYTES = 1024


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
            if len(body) > MAX_TRIGGER_BYTES:
                raise ValueError(f"trigger of {len(body)} bytes, limit {MAX_TRIGGER_BYTES}")
            message = json.loads(body)
            if not isinstance(message, dict):
                raise TypeError("trigger must be a JSON object")
            camera = check_camera_id(message.get("camera"))
            part_id = check_part_id(message.get("part_id"))
        except Exception as exc:  # anything at all (RecursionError too): one bad message
            self.malformed += 1
            self._log.warning("trigger", "dropped malformed trigger: %s: %s",
                              type(exc).__name__, shown(str(exc)))
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
