"""The MQTT output against a real Mosquitto broker, watched by a separate paho client."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from inspector.config import MqttConfig
from inspector.errors import ConfigError
from inspector.monitor import AlarmBoard, Condition
from inspector.outputs import SCHEMA_PATH
from inspector.outputs.mqtt import MqttOutput

from ..conftest import free_tcp_port
from .mosquitto import MOSQUITTO_PASSWD, OPENSSL, Broker, make_tls_files

SCHEMA = json.loads(SCHEMA_PATH.read_text())
FAST = {"prefix": "plant", "keepalive_s": 5, "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2, "counters_interval_s": 60.0}


@dataclass(frozen=True)
class Received:
    topic: str
    document: Any
    retain: bool


class Subscriber:
    """A dashboard: its own paho client, subscribed (QoS 1) before it is handed over."""

    def __init__(self, port: int, topic: str, client_id: str = "", clean: bool = True,
                 auth: tuple[str, str] | None = None) -> None:
        self.topic = topic
        self._lock = threading.Lock()
        self._messages: list[Received] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                   clean_session=clean)
        if auth:
            self._client.username_pw_set(*auth)
        self._client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(0.05, 0.2)
        self._client.connect("127.0.0.1", port, keepalive=5)
        self._client.loop_start()
        if not self._subscribed.wait(5):
            self.close()
            raise AssertionError(f"could not subscribe to {topic}")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._messages.append(Received(message.topic, json.loads(message.payload),
                                           bool(message.retain)))

    @property
    def messages(self) -> list[Received]:
        with self._lock:
            return list(self._messages)

    def wait_for(self, done: Callable[[list[Received]], bool],
                 timeout_s: float = 10.0) -> list[Received]:
        """The messages so far, once ``done`` says they are enough."""
        deadline = time.monotonic() + timeout_s
        while not done(messages := self.messages):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.topic}: only {len(messages)} message(s): "
                                     f"{messages[-3:]}")
            time.sleep(0.01)
        return messages

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class FakeClock:
    """Unix ns that the test moves on, to pass the output's grace period at once."""

    def __init__(self) -> None:
        self.now = time.time_ns()

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1e9)


def wait_until(done: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def verdict(camera: str, seq: int) -> dict[str, Any]:
    """A verdict document of the shape the schema describes."""
    reject = seq % 3 == 0
    return {"camera": camera, "seq": seq, "part_id": f"P{seq}" if seq % 2 else None,
            "verdict": "reject" if reject else "pass", "reject": reject,
            "score": 0.9 if reject else 0.2, "threshold": 0.5, "model_sha256": "ab" * 32,
            "captured_ns": 1_700_000_000_000_000_000 + seq, "inspected_ns":
            1_700_000_000_010_000_000 + seq, "latency_ms": {"queue": 1.0, "model": 6.5,
                                                             "total": 10.0},
            "regions": [{"x": 3, "y": 4, "w": 10, "h": 8, "area_px": 60, "area_mm2": None,
                         "peak": 1.7}] if reject else [], "error": None}


@pytest.fixture
def subscribe() -> Iterator[Callable[..., Subscriber]]:
    subscribers: list[Subscriber] = []

    def make(broker: Broker, topic: str, **options: Any) -> Subscriber:
        subscribers.append(Subscriber(broker.port, topic, **options))
        return subscribers[-1]

    yield make
    for subscriber in subscribers:
        subscriber.close()


@pytest.fixture
def make_output() -> Iterator[Callable[..., MqttOutput]]:
    """``make_output(url, box, start=True, counters=, environ=, clock=, **config)``."""
    outputs: list[MqttOutput] = []

    def make(url: str, box: str = "box1", start: bool = True, **options: Any) -> MqttOutput:
        extra = {k: options.pop(k) for k in ("counters", "environ", "clock") if k in options}
        output = MqttOutput(MqttConfig(url=url, **(FAST | options)), box, **extra)
        outputs.append(output)
        if start:
            output.start()
        return output

    yield make
    for output in outputs:
        output.close()


def test_verdicts_arrive_in_order_on_their_camera_topics_and_match_the_schema(
        broker: Broker, subscribe: Callable[..., Subscriber],
        make_output: Callable[..., MqttOutput]) -> None:
    fleet = subscribe(broker, "plant/+/+/verdict")
    output = make_output(broker.url, "box1")
    for seq in range(100):
        for camera in ("cam1", "cam2"):
            output.publish(camera, verdict(camera, seq))
    got = fleet.wait_for(lambda m: len(m) >= 200)
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for message in got:
        validator.validate(message.document)
        assert message.topic == f"plant/box1/{message.document['camera']}/verdict"
        assert not message.retain
    for camera in ("cam1", "cam2"):
        assert [m.document["seq"] for m in got if m.document["camera"] == camera] == list(
            range(100))
    wait_until(lambda: output.stats()["sent"] == 200)
    assert output.stats() | {"connected": True} == {
        "connected": True, "queued": 0, "inflight": 0, "sent": 200, "dropped": 0,
        "reconnects": 0, "errors": 0}


def test_the_retained_status_is_online_while_running_and_offline_after_close(
        broker: Broker, subscribe: Callable[..., Subscriber],
        make_output: Callable[..., MqttOutput]) -> None:
    output = make_output(broker.url, "box7")
    wait_until(lambda: output.stats()["connected"])
    # The status goes out just after the connection: a subscriber quick enough gets it
    # live (not flagged retained). Once the broker has it, a new subscriber gets the
    # retained copy.
    subscribe(broker, "plant/box7/status").wait_for(
        lambda m: any(x.document["state"] == "online" for x in m))
    online = subscribe(broker, "plant/box7/status").wait_for(lambda m: len(m) >= 1)[0]
    assert online.retain and online.document["state"] == "online"
    assert online.document["box"] == "box7" and isinstance(online.document["since_ns"], int)
    output.close()
    output.close()  # idempotent
    assert not output.stats()["connected"] and output.conditions() == []
    offline = subscribe(broker, "plant/box7/status").wait_for(lambda m: len(m) >= 1)[0]
    assert offline.retain
    assert offline.document | {"since_ns": 0} == {"state": "offline", "box": "box7",
                                                  "since_ns": 0, "reason": "stopped"}


def test_the_last_will_marks_a_killed_box_offline(
        broker: Broker, subscribe: Callable[..., Subscriber]) -> None:
    status = subscribe(broker, "plant/doomed/status")
    code = textwrap.dedent(f"""
        import time
        from inspector.config import MqttConfig
        from inspector.outputs.mqtt import MqttOutput
        MqttOutput(MqttConfig(url={broker.url!r}, **{FAST!r}), "doomed").start()
        time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        # A fresh interpreter imports the product first: seconds on a busy machine.
        status.wait_for(lambda m: any(r.document["state"] == "online" for r in m), 60)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        # The kernel closes the socket at once; without that, 1.5 x keepalive_s (7.5 s).
        will = status.wait_for(lambda m: m[-1].document["state"] == "offline")[-1]
    finally:
        process.kill()
        process.wait(10)
    assert will.document == {"state": "offline", "box": "doomed", "since_ns": None,
                             "reason": "connection lost"}
    late = subscribe(broker, "plant/doomed/status").wait_for(lambda m: len(m) >= 1)[0]
    assert late.retain and late.document["state"] == "offline"


def test_alarms_arrive_raised_then_cleared(
        broker: Broker, subscribe: Callable[..., Subscriber],
        make_output: Callable[..., MqttOutput]) -> None:
    alarms = subscribe(broker, "plant/box1/alarms")
    output = make_output(broker.url, "box1")
    board = AlarmBoard()
    board.subscribe(output.on_alarm)
    board.update([Condition("camera_down", "no frame for 5 s", "cam1")])
    board.update([])
    raised, cleared = (m.document for m in alarms.wait_for(lambda m: len(m) >= 2))
    assert raised | {"raised_ns": 0} == {"kind": "camera_down", "subject": "cam1",
                                         "reason": "no frame for 5 s", "active": True,
                                         "raised_ns": 0, "cleared_ns": None}
    assert cleared["active"] is False and cleared["raised_ns"] == raised["raised_ns"]
    assert cleared["cleared_ns"] >= raised["raised_ns"]


def test_counters_are_published_every_interval_and_retained(
        broker: Broker, subscribe: Callable[..., Subscriber],
        make_output: Callable[..., MqttOutput]) -> None:
    counters = subscribe(broker, "plant/box1/counters")
    calls = iter(range(1_000_000))

    def counts() -> dict[str, dict[str, int]]:
        return {"cam1": {"inspected": next(calls), "rejected": 1}}

    make_output(broker.url, "box1", counters=counts, counters_interval_s=0.05)
    got = counters.wait_for(lambda m: len(m) >= 3)
    inspected = [m.document["cameras"]["cam1"]["inspected"] for m in got]
    assert inspected == sorted(inspected) and len(set(inspected)) == len(inspected)
    assert got[0].document["box"] == "box1" and isinstance(got[0].document["at_ns"], int)
    late = subscribe(broker, "plant/box1/counters").wait_for(lambda m: len(m) >= 1)[0]
    assert late.retain and late.document["cameras"]["cam1"]["rejected"] == 1


def test_a_broker_away_costs_a_bounded_buffer_and_gets_it_in_order_when_back(
        make_broker: Callable[..., Broker], subscribe: Callable[..., Subscriber],
        make_output: Callable[..., MqttOutput]) -> None:
    # Persistence keeps the dashboard's session (and what is queued for it) over a restart.
    # It listens to cam1 only: this Mosquitto may hand a persistent session messages it
    # had already delivered once more after a restart, so cam0 sees the connection first.
    broker = make_broker(persistence=True)
    dashboard = subscribe(broker, "plant/box1/cam1/verdict", client_id="dashboard",
                          clean=False)
    before = subscribe(broker, "plant/box1/cam0/verdict")
    clock = FakeClock()
    output = make_output(broker.url, "box1", buffer=200, clock=clock)
    for seq in range(10):
        output.publish("cam0", verdict("cam0", seq))
    before.wait_for(lambda m: len(m) >= 10)
    wait_until(lambda: output.stats()["inflight"] == 0)

    broker.stop()
    wait_until(lambda: not output.stats()["connected"])
    for seq in range(10, 5010):
        output.publish("cam1", verdict("cam1", seq))
    stats = output.stats()
    assert (stats["queued"], stats["dropped"], stats["sent"]) == (200, 4800, 10)
    assert output.conditions() == []  # within the grace period (keepalive_s)
    clock.advance(6)
    [down] = output.conditions()
    assert down.kind == "output_down" and broker.url.replace("mqtt://", "") in down.reason

    broker.start()
    got = dashboard.wait_for(lambda m: len(m) >= 200)
    assert [m.document["seq"] for m in got] == list(range(4810, 5010))
    wait_until(lambda: output.stats()["sent"] == 210)
    assert len(dashboard.messages) == 200 and output.conditions() == []
    stats = output.stats()
    assert (stats["connected"], stats["queued"], stats["dropped"], stats["reconnects"]) == (
        True, 0, 4800, 1)


def test_a_broker_that_goes_mid_stream_loses_nothing_and_keeps_the_order(
        make_broker: Callable[..., Broker], subscribe: Callable[..., Subscriber],
        make_output: Callable[..., MqttOutput]) -> None:
    # QoS 1 messages in flight when the broker goes are resent before anything newer.
    broker = make_broker(persistence=True)
    dashboard = subscribe(broker, "plant/box1/cam1/verdict", client_id="dashboard",
                          clean=False)
    output = make_output(broker.url, "box1", buffer=5000)
    wait_until(lambda: output.stats()["connected"])
    for seq in range(3000):
        output.publish("cam1", verdict("cam1", seq))
    broker.stop()  # while the sender is still at it
    wait_until(lambda: not output.stats()["connected"])
    broker.start()
    wait_until(lambda: output.stats()["sent"] == 3000)
    got = dashboard.wait_for(lambda m: {r.document["seq"] for r in m} >= set(range(3000)))
    # At least once: a message resent may arrive twice, but none is missing or overtaken.
    assert list(dict.fromkeys(m.document["seq"] for m in got)) == list(range(3000))
    assert output.stats()["dropped"] == 0


def test_a_broker_down_at_start_is_normal_and_close_stays_bounded() -> None:
    clock = FakeClock()
    output = MqttOutput(MqttConfig(url=f"mqtt://127.0.0.1:{free_tcp_port()}", **FAST),
                        "box1", clock=clock)
    output.start()
    try:
        for seq in range(50):
            output.publish("cam1", verdict("cam1", seq))
        assert output.stats()["queued"] == 50 and output.conditions() == []
        clock.advance(5)
        [down] = output.conditions()
        assert "unreachable" in down.reason
    finally:
        started = time.monotonic()
        output.close()
        took = time.monotonic() - started
    assert took < 5.0
    assert output.stats() | {"reconnects": 0} == {
        "connected": False, "queued": 0, "inflight": 0, "sent": 0, "dropped": 50,
        "reconnects": 0, "errors": 0}


def test_publish_never_raises_and_counts_what_it_cannot_send() -> None:
    output = MqttOutput(MqttConfig(url="mqtt://127.0.0.1:1", **FAST), "box1")
    output.publish("cam/1", verdict("cam1", 1))  # not a topic level
    output.publish("cam1", {"score": object()})  # not JSON
    output.publish("cam1", verdict("cam1", 2))
    assert (output.stats()["dropped"], output.stats()["queued"]) == (2, 1)
    output.close()  # never started
    output.publish("cam1", verdict("cam1", 3))
    assert output.stats()["dropped"] == 3


@pytest.mark.skipif(MOSQUITTO_PASSWD is None, reason="mosquitto_passwd is not installed")
def test_a_broker_with_passwords_takes_the_password_from_the_environment(
        make_broker: Callable[..., Broker], subscribe: Callable[..., Subscriber],
        make_output: Callable[..., MqttOutput]) -> None:
    broker = make_broker(users={"box1": "s3cret", "dashboard": "d4sh"})
    verdicts = subscribe(broker, "plant/+/+/verdict", auth=("dashboard", "d4sh"))
    good = make_output(broker.url, "box1", username="box1",
                       environ={"INSPECTOR_MQTT_PASSWORD": "s3cret"})
    good.publish("cam1", verdict("cam1", 1))
    assert verdicts.wait_for(lambda m: len(m) >= 1)[0].document["seq"] == 1

    unset = make_output(broker.url, "box2", start=False, username="box2", environ={})
    with pytest.raises(ConfigError, match="INSPECTOR_MQTT_PASSWORD"):
        unset.start()

    clock = FakeClock()
    wrong = make_output(broker.url, "box3", username="box1", clock=clock,
                        environ={"INSPECTOR_MQTT_PASSWORD": "guess"})
    wrong.publish("cam1", verdict("cam1", 2))
    clock.advance(6)
    wait_until(lambda: "authorized" in " ".join(c.reason for c in wrong.conditions()))
    assert not wrong.stats()["connected"] and wrong.stats()["queued"] == 1
    assert [m.document["seq"] for m in verdicts.messages] == [1]


@pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")
def test_mqtts_verifies_the_broker_against_the_configured_ca(
        make_broker: Callable[..., Broker], subscribe: Callable[..., Subscriber],
        make_output: Callable[..., MqttOutput], tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    broker = make_broker(tls=tls)
    verdicts = subscribe(broker, "plant/+/+/verdict")  # on the plain listener
    output = make_output(broker.tls_url, "box1", tls_ca=tls.ca)
    output.publish("cam1", verdict("cam1", 1))
    assert verdicts.wait_for(lambda m: len(m) >= 1)[0].topic == "plant/box1/cam1/verdict"

    clock = FakeClock()
    untrusting = make_output(broker.tls_url, "box2", clock=clock)  # the system's CAs
    clock.advance(6)
    wait_until(lambda: "cannot connect" in " ".join(c.reason for c in
                                                     untrusting.conditions()))
    assert not untrusting.stats()["connected"]
