"""Frame and result channels over real ZeroMQ sockets, on every transport."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from inspector.bus import FrameReceiver, FrameSender
from inspector.errors import BusError
from inspector.outputs import ResultPublisher, ResultSubscriber

from .conftest import free_tcp_port, make_endpoint

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


def _subscribed(publisher: ResultPublisher, subscriber: ResultSubscriber) -> None:
    """Wait out the PUB/SUB slow-joiner window with probe messages."""
    for _ in range(100):
        publisher.publish("probe", {})
        if subscriber.recv(timeout_ms=20) is not None:
            return
    raise AssertionError("subscription never became active")


def test_results_reach_subscribers_filtered_by_topic(
    endpoint: str, zmq_context: zmq.Context
) -> None:
    publisher = ResultPublisher(endpoint, zmq_context)
    everything = ResultSubscriber(endpoint, ("",), zmq_context)
    only_cam2 = ResultSubscriber(endpoint, ("cam2", "probe"), zmq_context)
    try:
        _subscribed(publisher, everything)
        _subscribed(publisher, only_cam2)
        time.sleep(0.05)
        while everything.recv(timeout_ms=50) or only_cam2.recv(timeout_ms=50):
            pass  # flush probes
        publisher.publish("cam1", {"seq": 1, "verdict": "pass"})
        publisher.publish("cam2", {"seq": 2, "verdict": "reject"})
        got_all = [everything.recv(timeout_ms=1000) for _ in range(2)]
        got_cam2 = only_cam2.recv(timeout_ms=1000)
        nothing_more = only_cam2.recv(timeout_ms=100)
    finally:
        for sock in (publisher, everything, only_cam2):
            sock.close()
    assert got_all == [
        ("cam1", {"seq": 1, "verdict": "pass"}),
        ("cam2", {"seq": 2, "verdict": "reject"}),
    ]
    assert got_cam2 == ("cam2", {"seq": 2, "verdict": "reject"})
    assert nothing_more is None


def test_subscriber_skips_unreadable_results(zmq_context: zmq.Context) -> None:
    endpoint = "inproc://results-garbage"
    raw = zmq_context.socket(zmq.PUB)
    raw.bind(endpoint)
    subscriber = ResultSubscriber(endpoint, ("",), zmq_context)
    try:
        for _ in range(100):
            raw.send_multipart([b"probe", b"{}"])
            if subscriber.recv(timeout_ms=20):
                break
        raw.send_multipart([b"cam1", b"{not json"])
        raw.send_multipart([b"cam1", b"{}", b"extra"])
        raw.send_multipart([b"cam1", b'{"ok": true}'])
        results = [subscriber.recv(timeout_ms=500) for _ in range(3)]
    finally:
        raw.close(linger=0)
        subscriber.close()
    assert results[:2] == [None, None]
    assert results[2] == ("cam1", {"ok": True})
