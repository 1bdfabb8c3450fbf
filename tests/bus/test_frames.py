"""The frame channel over real ZeroMQ sockets, on every transport."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zmq

from inspector.bus import FrameReceiver, FrameSender
from inspector.errors import BusError
from tests.conftest import free_tcp_port, make_endpoint

FRAME = np.arange(32 * 24 * 3, dtype=np.uint8).reshape(32, 24, 3)


def test_frames_cross_every_transport(endpoint: str, zmq_context: zmq.Context) -> None:
    receiver = FrameReceiver(endpoint, zmq_context)
    sender = FrameSender(endpoint, zmq_context, hwm=100)
    try:
        for seq in range(20):
            assert sender.send(FRAME, "cam1", seq, 1000 + seq, f"part-{seq}")
        frames = [receiver.recv(timeout_ms=2000) for _ in range(20)]
    finally:
        sender.close()
        receiver.close()
    assert [f.header.seq for f in frames if f is not None] == list(range(20))
    assert all(np.array_equal(f.image, FRAME) for f in frames if f is not None)
    assert receiver.received == {"cam1": 20}
    assert frames[5] is not None and frames[5].header.part_id == "part-5"


@pytest.mark.parametrize("transport", ["inproc", "tcp"])
def test_slow_consumer_drops_and_every_accepted_frame_arrives(
    transport: str, tmp_path: Path, zmq_context: zmq.Context
) -> None:
    endpoint = make_endpoint(transport, tmp_path)
    receiver = FrameReceiver(endpoint, zmq_context, hwm=2)
    sender = FrameSender(endpoint, zmq_context, hwm=2)
    big = np.zeros((512, 512, 3), np.uint8)
    try:
        accepted = sum(sender.send(big, "cam1", seq, 0) for seq in range(200))
        # nobody read yet: the queues filled up and the sender dropped instead of blocking
        assert 0 < accepted < 200
        received = len(list(receiver.drain(quiet_ms=500)))
    finally:
        sender.close()
        receiver.close()
    assert received == accepted


def test_over_tcp_the_kernel_holds_few_frames_behind_a_stalled_inspector(
    zmq_context: zmq.Context,
) -> None:
    """The kernel's TCP buffers are bounded (TCP_BUFFER_BYTES each way), so a stalled
    inspector makes the camera drop within a few frames instead of queueing megabytes."""
    import time

    from inspector.bus.sockets import TCP_BUFFER_BYTES

    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    receiver = FrameReceiver(endpoint, zmq_context, hwm=2, known_cameras=["cam1"])
    sender = FrameSender(endpoint, zmq_context, hwm=2)
    frame = np.random.default_rng(0).integers(0, 255, (200, 500, 1), np.uint8)  # 100 kB
    accepted = 0
    try:
        sender.wait_ready(2000)
        deadline = time.monotonic() + 2  # pushing for 2 s: the kernel has time to grow
        while time.monotonic() < deadline:
            if sender.send(frame, "cam1", accepted, 0):
                accepted += 1
            else:
                time.sleep(0.005)
        received = len(list(receiver.drain(quiet_ms=500)))
    finally:
        sender.close()
        receiver.close()
    # Linux doubles each buffer it is given: two sockets, two buffers each.
    in_kernel = 2 * 2 * TCP_BUFFER_BYTES // frame.nbytes
    assert accepted <= 2 + 2 + in_kernel + 4  # the two queues, the kernel, a frame in flight
    assert received == accepted  # bounded, and nothing accepted is lost


def _turns(context: zmq.Context, endpoint: str, offset: float, seconds: float) -> list[int]:
    """Frames a receiver taking 70 a second got from two cameras at 70 fps each (2x
    overload, the product's queue lengths), the second camera ``offset`` of a period late."""
    import threading
    import time
    from collections import Counter

    receiver = FrameReceiver(endpoint, context, hwm=2, known_cameras=["a", "b"])
    stop = threading.Event()
    frame = np.zeros((256, 256, 3), np.uint8)
    start = time.monotonic() + 0.1

    def camera(name: str, late: float) -> None:
        sender = FrameSender(endpoint, context, hwm=2)
        due, seq = start + late / 70, 0
        try:
            while not stop.is_set():
                time.sleep(max(0.0, due - time.monotonic()))
                due += 1 / 70
                sender.send(frame, name, seq, time.time_ns())
                seq += 1
        finally:
            sender.close()

    threads = [threading.Thread(target=camera, args=args) for args in (("a", 0), ("b", offset))]
    for thread in threads:
        thread.start()
    taken: Counter[str] = Counter()
    try:
        end = start + seconds
        while time.monotonic() < end:
            got = receiver.recv(timeout_ms=100)
            if got is not None:
                taken[got.header.camera] += 1
                time.sleep(1 / 70)  # the inspection's time for one frame
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        receiver.close()
    return [taken["a"], taken["b"]]


@pytest.mark.parametrize("offset", [0.0, 0.33, 0.67])
def test_an_overloaded_inspector_takes_frames_from_every_camera_in_turn(
    zmq_context: zmq.Context, offset: float
) -> None:
    """Each camera gets about half. Without reading ZeroMQ's pending notices before each
    frame, one camera got 126 and the other 77 in 3 s."""
    a, b = _turns(zmq_context, f"inproc://turns-{offset}", offset, 2.0)
    assert a + b > 80
    assert min(a, b) >= 0.85 * max(a, b), (a, b)


def test_wait_ready_says_when_a_full_queue_has_room_again(
    tmp_path: Path, zmq_context: zmq.Context
) -> None:
    endpoint = make_endpoint("inproc", tmp_path)
    receiver = FrameReceiver(endpoint, zmq_context, hwm=2)
    sender = FrameSender(endpoint, zmq_context, hwm=2)
    try:
        assert sender.wait_ready(1000)
        seq = 0
        while sender.send(FRAME, "cam1", seq, 0):
            seq += 1
        assert not sender.wait_ready(50)  # full: the next frame would be dropped
        assert len(list(receiver.drain(quiet_ms=200))) == seq
        assert sender.wait_ready(1000)
        assert sender.send(FRAME, "cam1", seq, 0)
    finally:
        sender.close()
        receiver.close()


def test_send_without_any_receiver_never_blocks(zmq_context: zmq.Context) -> None:
    sender = FrameSender(f"tcp://127.0.0.1:{free_tcp_port()}", zmq_context, hwm=3)
    try:
        results = [sender.send(FRAME, "cam1", seq, 0) for seq in range(50)]
    finally:
        sender.close()
    assert results.count(False) >= 47


def test_second_bind_is_a_bus_error(zmq_context: zmq.Context) -> None:
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    first = FrameReceiver(endpoint, zmq_context)
    try:
        with pytest.raises(BusError, match=f"cannot bind {endpoint}"):
            FrameReceiver(endpoint, zmq_context)
    finally:
        first.close()


@pytest.mark.parametrize("endpoint", ["tcp://no-such-host.invalid:x", "bogus://x"])
def test_malformed_endpoint_is_a_bus_error(endpoint: str, zmq_context: zmq.Context) -> None:
    with pytest.raises(BusError, match="cannot"):
        FrameSender(endpoint, zmq_context)
