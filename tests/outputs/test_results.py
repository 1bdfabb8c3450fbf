"""The result feed (PUB/SUB) over real ZeroMQ sockets, on every transport, plain and with
CurveZMQ."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import zmq
import zmq.auth

from inspector.config import parse_config
from inspector.errors import ConfigError
from inspector.outputs import ResultPublisher, ResultSubscriber, curve_server
from tests.conftest import free_tcp_port


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


def _curve_keys(folder: Path, name: str) -> tuple[bytes, bytes]:
    _, secret_file = zmq.auth.create_certificates(str(folder), name)
    public, secret = zmq.auth.load_certificate(secret_file)
    return public, secret


def _feed(tmp_path: Path, clients: Path | None) -> tuple[ResultPublisher, bytes]:
    keys = tmp_path / "box"
    keys.mkdir()
    _, secret_file = zmq.auth.create_certificates(str(keys), "box")
    bus = SimpleNamespace(results_secret_key=Path(secret_file), results_clients=clients)
    curve = curve_server(bus)
    assert curve is not None
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    return ResultPublisher(endpoint, zmq.Context.instance(), curve=curve), curve.public_key


def _receives(publisher: ResultPublisher, subscriber: ResultSubscriber) -> bool:
    for _ in range(40):
        publisher.publish("cam1", {"seq": 1})
        if subscriber.recv(timeout_ms=25) is not None:
            return True
    return False


def test_a_curve_feed_serves_clients_that_know_the_box_key_and_no_one_else(
        tmp_path: Path) -> None:
    publisher, box_key = _feed(tmp_path, clients=None)
    trusted = ResultSubscriber(publisher.endpoint, server_key=box_key)
    plain = ResultSubscriber(publisher.endpoint)  # no CurveZMQ: the handshake fails
    try:
        assert _receives(publisher, trusted)
        assert not _receives(publisher, plain)
    finally:
        for sock in (trusted, plain, publisher):
            sock.close()


def test_a_curve_feed_with_a_client_folder_lets_in_only_the_listed_keys(tmp_path: Path) -> None:
    clients = tmp_path / "clients"
    clients.mkdir()
    listed = _curve_keys(clients, "plc-bridge")
    stranger = _curve_keys(tmp_path, "stranger")
    publisher, box_key = _feed(tmp_path, clients=clients)
    allowed = ResultSubscriber(publisher.endpoint, server_key=box_key, client_keys=listed)
    refused = ResultSubscriber(publisher.endpoint, server_key=box_key, client_keys=stranger)
    try:
        assert _receives(publisher, allowed)
        assert not _receives(publisher, refused)
    finally:
        for sock in (allowed, refused, publisher):
            sock.close()


def test_the_curve_keys_are_checked_by_the_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="results_clients needs results_secret_key"):
        parse_config({"bus": {"results_clients": str(tmp_path)}})
    with pytest.raises(ConfigError, match=r"bus\.results_secret_key: .*does not exist"):
        parse_config({"bus": {"results_secret_key": str(tmp_path / "none.key_secret")}},
                     runnable=True)
