"""Frame wire format: round trips, and a receiver that survives any garbage on a real socket."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector.bus import FrameReceiver, FrameSender, TriggerReceiver, decode_frame, encode_frame
from inspector.errors import WireError

RNG = np.random.default_rng(0)


def image(shape: tuple[int, ...], dtype: str = "uint8") -> np.ndarray:
    info = np.iinfo(dtype) if dtype != "float32" else None
    if info is None:
        return RNG.random(shape, dtype=np.float32)
    return RNG.integers(0, info.max, shape, dtype=dtype, endpoint=True)


def header(**changes: object) -> bytes:
    fields = {
        "v": 1,
        "camera": "cam1",
        "seq": 0,
        "ts_ns": 1,
        "part_id": None,
        "dtype": "uint8",
        "shape": [4, 5, 3],
        "encoding": "raw",
    }
    fields.update(changes)
    return json.dumps(fields).encode()


@pytest.mark.parametrize(
    ("shape", "dtype", "encoding"),
    [
        ((48, 64, 3), "uint8", "raw"),
        ((48, 64), "uint8", "raw"),
        ((48, 64, 1), "uint8", "raw"),
        ((48, 64, 4), "uint16", "raw"),
        ((48, 64, 3), "float32", "raw"),
        ((48, 64, 3), "uint8", "png"),
        ((48, 64), "uint16", "png"),
        ((48, 64, 4), "uint8", "png"),
        ((48, 64), "uint8", "jpeg"),
    ],
)
def test_lossless_round_trip(shape: tuple[int, ...], dtype: str, encoding: str) -> None:
    original = image(shape, dtype)
    parts = encode_frame(original, "cam-1", 7, 123, "part-9", encoding)
    frame = decode_frame([bytes(memoryview(part)) for part in parts])
    assert frame.header.camera == "cam-1"
    assert frame.header.seq == 7
    assert frame.header.ts_ns == 123
    assert frame.header.part_id == "part-9"
    assert frame.image.shape == shape
    assert frame.image.dtype == np.dtype(dtype)
    if encoding == "jpeg":  # lossy: close, not equal
        assert np.abs(frame.image.astype(int) - original.astype(int)).mean() < 100
    else:
        np.testing.assert_array_equal(frame.image, original)


def test_jpeg_colour_round_trip_is_close() -> None:
    smooth = np.zeros((64, 64, 3), np.uint8)
    smooth[..., 0] = np.linspace(0, 255, 64, dtype=np.uint8)
    smooth[..., 2] = 200
    frame = decode_frame(encode_frame(smooth, "c", 0, 0, encoding="jpeg", jpeg_quality=95))
    assert np.abs(frame.image.astype(int) - smooth.astype(int)).max() < 12


def test_raw_payload_is_not_copied_on_send() -> None:
    original = image((8, 8, 3))
    parts = encode_frame(original, "c", 0, 0)
    assert np.shares_memory(parts[1], original)


@pytest.mark.parametrize(
    ("array", "kwargs", "fragment"),
    [
        (np.zeros((4, 4, 3), np.int64), {}, "dtype must be one of"),
        (np.zeros((4, 4, 3), ">u2"), {}, "little-endian"),
        (np.zeros((4, 4, 2), np.uint8), {}, "C in 1, 3, 4"),
        (np.zeros((4,), np.uint8), {}, "[H, W]"),
        (np.zeros((0, 4), np.uint8), {}, "sides must be"),
        (np.zeros((4, 4, 3), np.uint16), {"encoding": "jpeg"}, "jpeg cannot carry uint16"),
        (np.zeros((4, 4, 4), np.uint8), {"encoding": "jpeg"}, "jpeg cannot carry shape"),
        (np.zeros((4, 4, 3), np.float32), {"encoding": "png"}, "png cannot carry float32"),
        (np.zeros((4, 4), np.uint8), {"encoding": "gif"}, "encoding must be one of"),
        (np.zeros((4, 4), np.uint8), {"camera": "bad id"}, "header.camera"),
        (np.zeros((4, 4), np.uint8), {"seq": -1}, "header.seq must be an integer"),
        (np.zeros((4, 4), np.uint8), {"part_id": ""}, "part_id"),
    ],
)
def test_encode_refuses_what_it_cannot_carry(
    array: np.ndarray, kwargs: dict, fragment: str
) -> None:
    args = {"camera": "c", "seq": 0, "ts_ns": 0, **kwargs}
    with pytest.raises(WireError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        encode_frame(array, **args)


PAYLOAD = bytes(4 * 5 * 3)


@pytest.mark.parametrize(
    ("parts", "fragment"),
    [
        ([header()], "expected 2 message parts"),
        ([header(), PAYLOAD, b""], "expected 2 message parts"),
        ([b"\xff\xfe", PAYLOAD], "not UTF-8 JSON"),
        ([b"{not json", PAYLOAD], "not UTF-8 JSON"),
        ([b"[1, 2]", PAYLOAD], "JSON object"),
        ([header(v=2), PAYLOAD], "header.v must be 1"),
        ([header(v="1"), PAYLOAD], "header.v must be 1"),
        ([header(extra=1), PAYLOAD], "unknown ['extra']"),
        ([json.dumps({"v": 1}).encode(), PAYLOAD], "missing"),
        ([header(dtype="int64"), PAYLOAD], "header.dtype"),
        ([header(dtype="object"), PAYLOAD], "header.dtype"),
        ([header(encoding="bmp"), PAYLOAD], "header.encoding"),
        ([header(shape=[4, 5, 3, 1]), PAYLOAD], "header.shape"),
        ([header(shape=[-4, 5, 3]), PAYLOAD], "sides must be"),
        ([header(shape=[4, "5", 3]), PAYLOAD], "list of integers"),
        ([header(shape=[4.0, 5, 3]), PAYLOAD], "list of integers"),
        ([header(shape="4x5"), PAYLOAD], "list of integers"),
        ([header(shape=[10**9, 10**9, 3]), PAYLOAD], "sides must be"),
        ([header(shape=[30000, 30000, 4], dtype="float32"), PAYLOAD], "exceeds the limit"),
        ([header(seq=True), PAYLOAD], "header.seq"),
        ([header(seq=-1), PAYLOAD], "0..2^63-1"),
        ([header(ts_ns="now"), PAYLOAD], "header.ts_ns"),
        ([header(camera=""), PAYLOAD], "header.camera"),
        ([header(camera=5), PAYLOAD], "header.camera"),
        ([header(camera="../etc"), PAYLOAD], "header.camera"),
        ([header(part_id=7), PAYLOAD], "part_id"),
        ([header(part_id="x" * 129), PAYLOAD], "part_id"),
        ([header(), PAYLOAD[:-1]], "payload is 59 bytes"),
        ([header(), PAYLOAD + b"\0"], "payload is 61 bytes"),
        ([header(), b""], "payload is 0 bytes"),
        ([header(encoding="png"), b"\x89PNG garbage"], "not a decodable png"),
        ([header(encoding="jpeg"), b""], "out of range"),
        ([b" " * 5000, PAYLOAD], "header is 5000 bytes"),
        # Found by an attack on a running box: each passed the gate, then broke a worker
        # (the nesting) or made the store refuse a batch of other cameras' verdicts.
        ([b"[" * 3000, PAYLOAD], "nested too deeply"),
        ([b'{"v": ' + b"[" * 3000, PAYLOAD], "nested too deeply"),
        ([header(v=True), PAYLOAD], "header.v must be 1"),
        ([header(camera=".."), PAYLOAD], "header.camera"),
        ([header(camera="."), PAYLOAD], "header.camera"),
        ([header(camera="cam1\n"), PAYLOAD], "header.camera"),
        ([header(camera="a" * 65), PAYLOAD], "header.camera"),
        ([header(part_id="\ud800"), PAYLOAD], "part_id"),
        ([header(part_id="line\nforged"), PAYLOAD], "part_id"),
        ([header(part_id=""), PAYLOAD], "part_id"),
        ([header(seq=2**63), PAYLOAD], "header.seq"),
        ([header(ts_ns=2**64), PAYLOAD], "header.ts_ns"),
    ],
)
def test_decode_rejects_malformed(parts: list[bytes], fragment: str) -> None:
    with pytest.raises(WireError) as caught:
        decode_frame(parts)
    assert fragment in str(caught.value)


def test_decode_refuses_a_compression_bomb_without_decoding_it() -> None:
    bomb = cv2.imencode(".png", np.zeros((8000, 8000), np.uint8))[1]  # 64 MP of zeros, ~60 kB
    assert len(bomb) < 200_000
    with pytest.raises(WireError, match="payload is 8000x8000, header says 8x8"):
        decode_frame([header(encoding="png", shape=[8, 8]), bomb.tobytes()])


def test_decode_rejects_image_that_disagrees_with_header() -> None:
    parts = encode_frame(np.zeros((8, 8, 3), np.uint8), "c", 0, 0, encoding="png")
    lying = json.loads(parts[0])
    lying["shape"] = [8, 8]
    with pytest.raises(WireError, match="header says"):
        decode_frame([json.dumps(lying).encode(), parts[1]])


@given(st.lists(st.binary(max_size=300), min_size=0, max_size=4))
@settings(max_examples=300, deadline=None)
def test_decode_random_bytes_raises_only_wire_error(parts: list[bytes]) -> None:
    with contextlib.suppress(WireError):
        decode_frame(parts)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4),
    max_leaves=8,
)


@given(
    field=st.sampled_from(["v", "camera", "seq", "ts_ns", "part_id", "dtype", "shape", "encoding"]),
    value=JSON_VALUES,
    payload=st.binary(max_size=100),
)
@settings(max_examples=400, deadline=None)
def test_decode_random_header_fields_raise_only_wire_error(
    field: str, value: object, payload: bytes
) -> None:
    with contextlib.suppress(WireError):
        decode_frame([header(**{field: value}), payload])


# --- the receiver on a real socket ---------------------------------------------------------


@pytest.fixture
def wire_pair(zmq_context: zmq.Context) -> Iterator[tuple[zmq.Socket, FrameReceiver]]:
    receiver = FrameReceiver("inproc://wire-fuzz", zmq_context, hwm=10_000)
    raw = zmq_context.socket(zmq.PUSH)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect("inproc://wire-fuzz")
    yield raw, receiver
    raw.close(linger=0)
    receiver.close()


@given(st.lists(st.lists(st.binary(max_size=200), min_size=1, max_size=3), max_size=20))
@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_receiver_counts_garbage_and_keeps_going(
    wire_pair: tuple[zmq.Socket, FrameReceiver], messages: list[list[bytes]]
) -> None:
    raw, receiver = wire_pair
    before_bad, before_good = receiver.malformed.total(), receiver.received.total()
    for message in messages:
        raw.send_multipart(message)
    good = encode_frame(np.full((4, 4), 9, np.uint8), "cam1", 1, 2)
    raw.send_multipart([good[0], good[1].tobytes()])
    frames = []
    for _ in range(len(messages) + 1):  # messages arrive in order: the good one comes last
        if (frame := receiver.recv(timeout_ms=1000)) is not None:
            frames.append(frame)
    # every garbage message was counted once; the good frame after them still got through
    assert receiver.malformed.total() - before_bad == len(messages)
    assert receiver.received.total() - before_good == 1
    assert frames[-1].image.sum() == 9 * 16


def test_receiver_attributes_bad_frames_to_their_camera(
    wire_pair: tuple[zmq.Socket, FrameReceiver],
) -> None:
    raw, receiver = wire_pair
    raw.send_multipart([header(camera="cam7"), PAYLOAD])
    raw.send_multipart([header(camera="cam7"), b"short"])
    raw.send_multipart([b"garbage", b""])
    raw.send_multipart([header(camera="cam8"), b"short"])  # a valid header admits cam8
    results = [receiver.recv(timeout_ms=500) for _ in range(4)]
    assert results[0] is not None and results[1:] == [None, None, None]
    assert receiver.malformed == {"cam7": 1, "cam8": 1, "?": 1}
    assert receiver.received == {"cam7": 1}


def test_made_up_camera_ids_cannot_grow_the_receivers_state(zmq_context: zmq.Context) -> None:
    receiver = FrameReceiver("inproc://made-up", zmq_context, hwm=10_000,
                             known_cameras=["line1"], max_unknown_cameras=3)
    raw = zmq_context.socket(zmq.PUSH)
    raw.connect("inproc://made-up")
    try:
        for i in range(1000):
            raw.send_multipart([header(camera=f"fake{i}", seq=i), PAYLOAD])
            if i % 100 == 0:  # the configured camera keeps its place whatever else comes
                raw.send_multipart([header(camera="line1", seq=i), PAYLOAD])
        frames = [f for _ in range(1010) if (f := receiver.recv(timeout_ms=500)) is not None]
        assert {f.header.camera for f in frames} == {"line1", "fake0", "fake1", "fake2"}
        assert receiver.received["line1"] == 10
        assert set(receiver.received) | set(receiver.malformed) == {
            "line1", "fake0", "fake1", "fake2", "?"}
        assert receiver.malformed["?"] == 997
    finally:
        raw.close(linger=0)
        receiver.close()


@pytest.mark.parametrize("body", [b"[" * 3000, b'{"camera": ' + b"[" * 3000,
                                  b'{"camera": "..", "part_id": null}',
                                  b'{"camera": "cam1\n", "part_id": null}',
                                  rb'{"camera": "cam1", "part_id": "\ud800"}',
                                  b'{"camera": "cam1", "part_id": 5}', b"x" * 5000, b"\xff"])
def test_trigger_receiver_counts_hostile_triggers_and_keeps_going(
    zmq_context: zmq.Context, body: bytes,
) -> None:
    receiver = TriggerReceiver("inproc://triggers", zmq_context)
    raw = zmq_context.socket(zmq.PUSH)
    raw.connect("inproc://triggers")
    try:
        raw.send(body)
        raw.send(b'{"camera": "cam1", "part_id": "p-1"}')
        assert receiver.recv(timeout_ms=1000) is None
        assert receiver.malformed == 1
        assert receiver.recv(timeout_ms=1000) == ("cam1", "p-1")
    finally:
        raw.close(linger=0)
        receiver.close()


def test_sender_and_receiver_share_the_format(zmq_context: zmq.Context) -> None:
    receiver = FrameReceiver("inproc://share", zmq_context)
    sender = FrameSender("inproc://share", zmq_context)
    try:
        original = image((30, 40, 3))
        assert sender.send(original, "cam1", 3, 99, "p1")
        frame = receiver.recv(timeout_ms=1000)
        assert frame is not None
        np.testing.assert_array_equal(frame.image, original)
        assert not frame.image.flags.owndata  # a view of the message buffer, not a copy
    finally:
        sender.close()
        receiver.close()
