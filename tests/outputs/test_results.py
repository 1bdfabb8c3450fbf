"""The result channel (PUB/SUB) over real ZeroMQ sockets, on every transport."""

from __future__ import annotations

import time

import zmq

from inspector.outputs import ResultPublisher, ResultSubscriber


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
