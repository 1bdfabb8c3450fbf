"""The frame wire format, shared by both ends of the frame bus. Never pickle.

A frame is a two-part ZeroMQ message ``[header, payload]``:

- ``header``: UTF-8 JSON object with exactly these keys::

    {"v": 1, "camera": "cam1", "seq": 42, "ts_ns": 1732441234000000000,
     "part_id": null, "dtype": "uint8", "shape": [480, 640, 3], "encoding": "raw"}

  ``shape`` and ``dtype`` describe the decoded image; ``encoding`` says how the
  payload carries it. Images are HxW (grey) or HxWxC with C in 1, 3, 4, channel
  order BGR(A) as OpenCV uses, little-endian.
- ``payload``: the pixel bytes, C order (``raw``, sent zero-copy), or a
  ``jpeg`` / ``png`` file.

``decode_frame`` checks every field and the payload length before it touches the
pixels, and raises ``WireError`` for anything it does not accept.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from inspector.errors import WireError
from inspector.identifiers import check_camera_id, check_counter, check_part_id, shown

WIRE_VERSION = 1
ENCODINGS = ("raw", "jpeg", "png")
# Little-endian only: a frame must mean the same on every host.
DTYPES: dict[str, np.dtype] = {
    "uint8": np.dtype("<u1"),
    "uint16": np.dtype("<u2"),
    "float32": np.dtype("<f4"),
}
# Which dtypes and channel counts each compressed encoding can carry.
_CODEC_DTYPES = {"jpeg": ("uint8",), "png": ("uint8", "uint16")}
_CODEC_CHANNELS = {"jpeg": (1, 3), "png": (1, 3, 4)}
_CODEC_EXT = {"jpeg": ".jpg", "png": ".png"}

MAX_HEADER_BYTES = 4096
MAX_SIDE = 32768
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
_HEADER_KEYS = frozenset({"v", "camera", "seq", "ts_ns", "part_id", "dtype", "shape", "encoding"})


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """Metadata of one frame: who took it, when, and how to read its pixels."""

    camera: str
    seq: int
    ts_ns: int
    dtype: str
    shape: tuple[int, ...]
    encoding: str = "raw"
    part_id: str | None = None

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "v": WIRE_VERSION,
                "camera": self.camera,
                "seq": self.seq,
                "ts_ns": self.ts_ns,
                "part_id": self.part_id,
                "dtype": self.dtype,
                "shape": list(self.shape),
                "encoding": self.encoding,
            },
            separators=(",", ":"),
        ).encode()


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded frame. ``image`` may be a read-only view of the received buffer."""

    header: FrameHeader
    image: np.ndarray


def encode_frame(
    image: np.ndarray,
    camera: str,
    seq: int,
    ts_ns: int,
    part_id: str | None = None,
    encoding: str = "raw",
    jpeg_quality: int = 90,
) -> list[Any]:
    """Build the ``[header, payload]`` parts for ``image``.

    For ``raw`` the payload is the array itself (no copy when it is already
    C-contiguous): the caller must not modify it until the message is sent.
    """
    if encoding not in ENCODINGS:
        raise WireError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    dtype = _dtype_name(image)
    header = FrameHeader(camera, seq, ts_ns, dtype, tuple(image.shape), encoding, part_id)
    _check_header(header)
    if encoding == "raw":
        return [header.to_json(), np.ascontiguousarray(image)]
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if encoding == "jpeg" else []
    ok, buffer = cv2.imencode(_CODEC_EXT[encoding], image, params)
    if not ok:
        raise WireError(f"cannot encode a {dtype} {image.shape} image as {encoding}")
    return [header.to_json(), buffer]


def decode_frame(parts: Sequence[Any], max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 admit: Callable[[str], bool] | None = None) -> Frame:
    """Validate and decode one received message (bytes, memoryviews or ``zmq.Frame``s).

    ``admit``, when given, decides from the checked header alone whether the camera's
    frames are taken at all, before any pixel is decoded.
    """
    if len(parts) != 2:
        raise WireError(f"expected 2 message parts [header, payload], got {len(parts)}")
    header_buf, payload = (_buffer(part) for part in parts)
    if len(header_buf) > MAX_HEADER_BYTES:
        raise WireError(f"header is {len(header_buf)} bytes, limit {MAX_HEADER_BYTES}")
    header = parse_header(bytes(header_buf))
    if admit is not None and not admit(header.camera):
        raise WireError(f"camera {header.camera} is not admitted")
    expected = math.prod(header.shape) * DTYPES[header.dtype].itemsize
    if expected > max_frame_bytes:
        raise WireError(f"frame of {expected} bytes exceeds the limit of {max_frame_bytes}")
    if header.encoding == "raw":
        if len(payload) != expected:
            raise WireError(
                f"payload is {len(payload)} bytes, shape {list(header.shape)} "
                f"{header.dtype} needs {expected}"
            )
        image = np.frombuffer(payload, dtype=DTYPES[header.dtype]).reshape(header.shape)
        return Frame(header, image)
    if len(payload) == 0 or len(payload) > max_frame_bytes:
        raise WireError(f"{header.encoding} payload of {len(payload)} bytes is out of range")
    _check_compressed_size(payload, header)
    image = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise WireError(f"payload is not a decodable {header.encoding} image")
    if image.shape != header.shape or _dtype_name(image) != header.dtype:
        raise WireError(
            f"decoded image is {_dtype_name(image)} {list(image.shape)}, header says "
            f"{header.dtype} {list(header.shape)}"
        )
    return Frame(header, image)


def parse_header(raw: bytes) -> FrameHeader:
    """Parse and check a header; every problem is a ``WireError`` that names the field."""
    try:
        fields = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"header is not UTF-8 JSON: {exc}") from None
    except RecursionError:  # "[[[[..." within the size limit: deeper than the parser goes
        raise WireError("header is nested too deeply") from None
    if not isinstance(fields, dict):
        raise WireError(f"header must be a JSON object, got {type(fields).__name__}")
    version = fields.get("v")
    if not _is_int(version) or version != WIRE_VERSION:  # true == 1 in Python, not here
        raise WireError(f"header.v must be {WIRE_VERSION}, got {shown(version)}")
    if set(fields) != _HEADER_KEYS:
        missing, extra = _HEADER_KEYS - set(fields), set(fields) - _HEADER_KEYS
        raise WireError(f"header keys wrong: missing {sorted(missing)}, unknown {sorted(extra)}")
    shape = fields["shape"]
    if not isinstance(shape, list) or not all(_is_int(side) for side in shape):
        raise WireError(f"header.shape must be a list of integers, got {shown(shape)}")
    for name in ("seq", "ts_ns"):
        if not _is_int(fields[name]):
            raise WireError(f"header.{name} must be an integer, got {shown(fields[name])}")
    for name in ("camera", "dtype", "encoding"):
        if not isinstance(fields[name], str):
            raise WireError(f"header.{name} must be a string, got {shown(fields[name])}")
    header = FrameHeader(
        camera=fields["camera"],
        seq=fields["seq"],
        ts_ns=fields["ts_ns"],
        dtype=fields["dtype"],
        shape=tuple(shape),
        encoding=fields["encoding"],
        part_id=fields["part_id"],
    )
    _check_header(header)
    return header


def _check_header(header: FrameHeader) -> None:
    """Range checks shared by the sending and the receiving end; the identifiers are
    checked by the same functions the store uses (``inspector.identifiers``)."""
    try:
        check_camera_id(header.camera, "header.camera")
        check_counter(header.seq, "header.seq")
        check_counter(header.ts_ns, "header.ts_ns")
        check_part_id(header.part_id, "header.part_id")
    except ValueError as exc:
        raise WireError(str(exc)) from None
    if header.dtype not in DTYPES:
        raise WireError(f"header.dtype must be one of {sorted(DTYPES)}, got "
                        f"{shown(header.dtype)}")
    if header.encoding not in ENCODINGS:
        raise WireError(f"header.encoding must be one of {ENCODINGS}, got "
                        f"{shown(header.encoding)}")
    shape = header.shape
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3, 4)):
        raise WireError(f"header.shape must be [H, W] or [H, W, C] with C in 1, 3, 4, got {shape}")
    if not all(1 <= side <= MAX_SIDE for side in shape[:2]):
        raise WireError(f"header.shape sides must be in 1..{MAX_SIDE}, got {list(shape)}")
    if header.encoding != "raw":
        channels = shape[2] if len(shape) == 3 else 1
        if header.dtype not in _CODEC_DTYPES[header.encoding]:
            raise WireError(f"{header.encoding} cannot carry {header.dtype}")
        if channels not in _CODEC_CHANNELS[header.encoding] or shape[-1:] == (1,):
            raise WireError(f"{header.encoding} cannot carry shape {list(shape)}")


def _check_compressed_size(payload: memoryview, header: FrameHeader) -> None:
    """Read only the file header: a tiny PNG that inflates to gigapixels is refused undecoded."""
    try:
        with Image.open(io.BytesIO(payload)) as probe:
            width, height = probe.size
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise WireError(f"payload is not a decodable {header.encoding} image: {exc}") from None
    if (height, width) != header.shape[:2]:
        raise WireError(
            f"{header.encoding} payload is {height}x{width}, header says "
            f"{header.shape[0]}x{header.shape[1]}"
        )


def _dtype_name(image: np.ndarray) -> str:
    for name, dtype in DTYPES.items():
        if image.dtype == dtype:
            return name
    raise WireError(f"dtype must be one of {sorted(DTYPES)} (little-endian), got {image.dtype}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _buffer(part: Any) -> memoryview:
    """A flat byte view of one message part, without copying it."""
    buffer = getattr(part, "buffer", part)  # zmq.Frame exposes .buffer
    view = memoryview(buffer)
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view
