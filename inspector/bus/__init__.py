"""The frame bus: how frames travel from cameras to the inspector over ZeroMQ.

- ``wire``: the frame wire format (JSON header + zero-copy payload), encoded and validated
- ``frames``: the frame channel, PUSH from each camera, PULL at the inspector
- ``triggers``: software triggers, one JSON message per part to capture
- ``sockets``: the one way sockets are opened (linger 0, failures as ``BusError``)
"""

from inspector.bus.frames import MAX_UNKNOWN_CAMERAS, FrameReceiver, FrameSender
from inspector.bus.sockets import open_socket
from inspector.bus.triggers import TriggerReceiver, send_trigger
from inspector.bus.wire import Frame, FrameHeader, decode_frame, encode_frame

__all__ = ["MAX_UNKNOWN_CAMERAS", "Frame", "FrameHeader", "FrameReceiver", "FrameSender",
           "TriggerReceiver", "decode_frame", "encode_frame", "open_socket", "send_trigger"]
