"""Hostile frame-bus messages against a running inspection service: nothing stops it.

Real ZeroMQ sockets and the real demo model. Each kind below was either found by an
attack on a running box or is a classic of its kind; every one must be counted as
malformed, never kill a worker, and never keep a valid frame from its verdict.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector.bus import MAX_UNKNOWN_CAMERAS, FrameSender
from inspector.inspection import DEMO_MODEL, InspectionService, Preview
from inspector.model import Detector
from tests.conftest import make_endpoint
from tests.inspection.test_pipeline import _Collect, _config

SIDE = 64
GOOD = np.full((SIDE, SIDE, 3), 128, np.uint8)


def _header(**changes: object) -> bytes:
    fields = {"v": 1, "camera": "cam1", "seq": 0, "ts_ns": 1, "part_id": None,
              "dtype": "uint8", "shape": [SIDE, SIDE, 3], "encoding": "raw", **changes}
    return json.dumps(fields).encode()


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


RAW = GOOD.tobytes()
# name -> the message parts; at least 16 kinds.
HOSTILE: dict[str, Callable[[], list[bytes]]] = {
    "nested header": lambda: [b"[" * 3000, RAW],
    "nested field": lambda: [b'{"v": 1, "camera": ' + b"[" * 3000, RAW],
    "not json": lambda: [b"\xff\xfe{", RAW],
    "json array": lambda: [b"[1, 2, 3]", RAW],
    "version true": lambda: [_header(v=True), RAW],
    "camera dotdot": lambda: [_header(camera=".."), RAW],
    "camera newline": lambda: [_header(camera="cam1\n"), RAW],
    "part id surrogate": lambda: [_header(part_id="\ud800"), RAW],
    "part id control": lambda: [_header(part_id="a\r\nFORGED"), RAW],
    "seq 2^63": lambda: [_header(seq=2**63), RAW],
    "ts_ns 2^64": lambda: [_header(ts_ns=2**64), RAW],
    "negative seq": lambda: [_header(seq=-1), RAW],
    "unknown key": lambda: [_header(admin=True), RAW],
    "bad dtype": lambda: [_header(dtype="object"), RAW],
    "short payload": lambda: [_header(), RAW[:-1]],
    "huge declared shape": lambda: [_header(shape=[30000, 30000, 4], dtype="float32"), RAW],
    "corrupt png": lambda: [_header(encoding="png"), b"\x89PNG\r\n\x1a\n" + b"\0" * 64],
    "corrupt jpeg": lambda: [_header(encoding="jpeg"), b"\xff\xd8\xff" + b"\0" * 64],
    "png not its declared size": lambda: [_header(encoding="png", shape=[4096, 4096, 3]),
                                          _png(GOOD)],
    "one part": lambda: [_header()],
    "three parts": lambda: [_header(), RAW, b""],
    "oversized header": lambda: [b" " * 5000, RAW],
}


@pytest.fixture
def running(tmp_path: Path, zmq_context: zmq.Context) -> Iterator[tuple]:
    frames = make_endpoint("inproc", tmp_path)
    config = _config(tmp_path, frames, f"inproc://results-{id(tmp_path)}",
                     cameras=[{"id": "cam1", "type": "synthetic", "latency_budget_ms": 5000}],
                     inspection={"workers": 2})
    collect = _Collect()
    service = InspectionService(config, Detector.open(DEMO_MODEL, threads=1, providers=("cpu",)),
                                zmq_context, sinks=[collect])
    service.start()
    raw = zmq_context.socket(zmq.PUSH)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(frames)
    sender = FrameSender(frames, zmq_context, hwm=1000)
    yield service, raw, sender, collect
    sender.close()
    raw.close(linger=0)
    service.stop(drain_quiet_ms=50)


def test_every_hostile_kind_is_counted_and_the_next_frame_still_gets_its_verdict(
    running: tuple,
) -> None:
    service, raw, sender, collect = running
    for seq, (name, message) in enumerate(HOSTILE.items()):
        raw.send_multipart(message())
        assert sender.send(GOOD, "cam1", seq, time.time_ns()), name
        records = collect.wait(seq + 1)
        assert records[-1].seq == seq and records[-1].verdict != "error", name
    _wait_malformed(service, len(HOSTILE))
    accounting = service.accounting()
    assert sum(c["malformed"] for c in accounting.values()) == len(HOSTILE)
    assert set(accounting) <= {"cam1", "?"}  # no hostile id got state of its own
    assert service.dead_workers() == [] and service.faults == 0


@given(kinds=st.lists(st.sampled_from(sorted(HOSTILE)), min_size=1, max_size=6))
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hostile_messages_interleaved_with_frames_stop_nothing(
    running: tuple, kinds: list[str],
) -> None:
    service, raw, sender, collect = running
    before_malformed = sum(c["malformed"] for c in service.accounting().values())
    before = len(collect.records)
    for kind in kinds:
        raw.send_multipart(HOSTILE[kind]())
    assert sender.send(GOOD, "cam1", before, time.time_ns())
    collect.wait(before + 1)
    _wait_malformed(service, before_malformed + len(kinds))
    assert sum(c["malformed"] for c in service.accounting().values()) == (
        before_malformed + len(kinds))
    assert service.dead_workers() == [] and service.faults == 0


def test_a_worker_survives_an_unforeseen_failure_and_inspection_goes_on(
    running: tuple, monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, _, sender, collect = running
    original, failed = service.receiver.recv, threading.Event()

    def recv_failing_once(timeout_ms: int = 100):
        if not failed.is_set():
            failed.set()
            raise RuntimeError("a bug nobody foresaw")
        return original(timeout_ms)

    monkeypatch.setattr(service.receiver, "recv", recv_failing_once)
    assert failed.wait(5)
    assert sender.send(GOOD, "cam1", 0, time.time_ns())
    assert collect.wait(1)[0].verdict != "error"
    assert service.faults == 1 and service.dead_workers() == []


def test_made_up_camera_ids_keep_memory_bounded(running: tuple) -> None:
    """The attack: small valid PNGs of a large frame, each from a new camera id."""
    service, raw, _, collect = running
    large = _png(np.zeros((1024, 1024, 3), np.uint8))  # 3 MB decoded, a few kB sent
    for i in range(300):
        header = _header(camera=f"fake{i}", seq=i, ts_ns=time.time_ns(), encoding="png",
                         shape=[1024, 1024, 3])
        raw.send_multipart([header, large])
    collect.wait(MAX_UNKNOWN_CAMERAS)
    _wait_malformed(service, 300 - MAX_UNKNOWN_CAMERAS)
    accounting = service.accounting()
    assert len(accounting) <= MAX_UNKNOWN_CAMERAS + 2  # the admitted few, cam1 at most, "?"
    assert accounting["?"]["malformed"] == 300 - MAX_UNKNOWN_CAMERAS
    assert len(service.preview.cameras()) <= MAX_UNKNOWN_CAMERAS + 1


def _wait_malformed(service: InspectionService, count: int, timeout_s: float = 30) -> None:
    """Until ``count`` messages are counted malformed: hostile messages come on a socket of
    their own, which the receiver may read after the valid frame that followed them."""
    deadline = time.monotonic() + timeout_s
    while sum(c["malformed"] for c in service.accounting().values()) < count:
        assert time.monotonic() < deadline, service.accounting()
        time.sleep(0.02)


def test_the_preview_keeps_the_most_recently_updated_cameras_only() -> None:
    preview = Preview(max_cameras=2)
    for camera in ("a", "b", "a", "c"):
        preview.update(camera, GOOD, None, {})
    assert preview.cameras() == ["a", "c"]




def test_overload_drops_at_capture_instead_of_ageing_frames_into_errors(
    tmp_path: Path, zmq_context: zmq.Context, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A camera far faster than the model: the bounded queues fill, the camera's sends
    are refused (dropped at capture, counted there), and what is inspected is fresh."""
    frames = make_endpoint("inproc", tmp_path)
    config = _config(tmp_path, frames, f"inproc://results-{id(tmp_path)}",
                     cameras=[{"id": "cam1", "type": "synthetic", "latency_budget_ms": 1500}],
                     inspection={"workers": 1})
    detector = Detector.open(DEMO_MODEL, threads=1, providers=("cpu",))
    predict = detector.predict_batch

    # A model that manages under 10 frames a second: the queues of the old defaults (20
    # frames) held over 2 s of work, the bounded ones (4 frames) well under the budget.
    def slow_predict(images):
        time.sleep(0.1)
        return predict(images)

    monkeypatch.setattr(detector, "predict_batch", slow_predict)
    collect = _Collect()
    service = InspectionService(config, detector, zmq_context, sinks=[collect])
    service.start()
    sender = FrameSender(frames, zmq_context, hwm=config.bus.send_hwm)
    try:
        sent = dropped = 0
        until = time.monotonic() + 2.0
        while time.monotonic() < until:  # 200 frames a second
            if sender.send(GOOD, "cam1", sent + dropped, time.time_ns()):
                sent += 1
            else:
                dropped += 1
            time.sleep(0.005)
        alarm = service.capacity_alarm(window_s=1.5)
        records = collect.wait(sent, timeout_s=60)
    finally:
        sender.close()
        service.stop(drain_quiet_ms=100)
    assert dropped > sent  # the excess was refused at capture ...
    stale = [r for r in records if r.verdict == "error"]
    assert stale == [], stale[0].error  # ... and nothing received aged past its budget
    assert alarm is not None and alarm.startswith("capacity")  # the box says it is full


def test_a_box_that_keeps_up_raises_no_capacity_alarm(running: tuple) -> None:
    service, _, sender, collect = running
    for seq in range(5):  # a few frames, far below what the model manages
        assert sender.send(GOOD, "cam1", seq, time.time_ns())
        collect.wait(seq + 1)
        time.sleep(0.25)
    assert service.capacity_alarm(window_s=1.0) is None
