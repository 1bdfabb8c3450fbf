"""The MQTT output: verdicts, alarms, counters and the box's status to a broker.

Topics under ``<prefix>/<box>/`` (docs/integration.md): ``<camera>/verdict`` (each verdict),
``status`` (retained online/offline, "offline" also the last will), ``alarms`` (raised and
cleared) and ``counters`` (per camera, retained). Many boxes share a broker and a prefix.

Nothing here blocks inspection: ``publish`` appends to a bounded buffer and returns. One
sender thread hands messages to paho only while connected, a window at a time, so a
broker that is away costs bounded memory, and what does not fit is counted as dropped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from inspector.config import MqttConfig
from inspector.errors import ConfigError
from inspector.identifiers import check_camera_id
from inspector.monitor import Alarm, Condition
from inspector.outputs.results import encode

logger = logging.getLogger(__name__)

# Bounds. Buffer: config.buffer messages (verdicts and alarms) wait while the broker is
# away or slow; beyond it the oldest goes, counted as dropped. In flight: the sender hands
# paho at most INFLIGHT messages not yet acknowledged (QoS 1/2) or written (QoS 0), so
# paho's own queue (max_queued left unlimited) holds at most INFLIGHT of ours plus the
# status messages. Threads: two, paho's network loop (loop_start) and the sender.
INFLIGHT = 20
STATUS_QOS = 1  # status, last will and alarms go at least once whatever the config says
CLOSE_TIMEOUT_S = 5.0  # close(): flush, say offline, disconnect (plus paho's connect timeout)
_IDLE_WAIT_S = 0.5  # the sender's longest sleep; every change also wakes it
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}

Counters = Callable[[], dict[str, dict[str, int]]]


@dataclass(frozen=True)
class _Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool = False  # only the counters (status messages bypass the buffer)


def broker_address(url: str) -> tuple[str, int, bool]:
    """``(host, port, tls)`` of an ``mqtt://`` or ``mqtts://`` URL (TLS for mqtts)."""
    parts = urlsplit(url)  # MqttConfig has checked the scheme and the host
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:  # a port beyond 65535
        raise ConfigError([f"outputs.mqtt.url: {exc}"]) from exc
    return parts.hostname or "", port, parts.scheme == "mqtts"


class MqttOutput:
    """Publishes to one MQTT broker without ever blocking its callers.

    ``publish`` is an ``Output`` and ``on_alarm`` an alarm listener; both append to the
    bounded buffer and return. ``conditions`` states ``output_down`` for the alarm board.
    ``counters`` gives the per-camera counts to publish; ``environ`` holds the password
    (``config.password_env``); ``clock`` (Unix ns) stamps messages and times the outage.
    """

    def __init__(self, config: MqttConfig, box_id: str, counters: Counters | None = None,
                 environ: Mapping[str, str] = os.environ,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.config = config
        self.box_id = box_id
        self.host, self.port, self.tls = broker_address(config.url)
        self.broker = f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"
        # One id per box: a box that restarts takes its old session over, and the broker
        # sends that session's will ("offline") before the new "online", not after it.
        self.client_id = f"inspector-{box_id}"
        self.base = f"{config.prefix}/{box_id}"
        self.status_topic = f"{self.base}/status"
        self._counters = counters
        self._environ = environ
        self._clock = clock
        self._grace_ns = int(config.keepalive_s * 1e9)  # down this long: output_down
        self._cond = threading.Condition()  # guards everything below; never held over paho
        self._buffer: deque[_Message] = deque()
        self._window: dict[int, int] = {}  # mid -> qos, handed to paho and not yet done
        self._early: set[int] = set()  # mids paho finished before the sender noted them
        self._status_mids: set[int] = set()  # status messages: not part of the window
        self._connected = self._ever_connected = False
        self._resend = False  # reconnected: paho resends the window before anything new
        self._down_since: int | None = None
        self._last_error = "not connected yet"
        self._overflowing = self._closing = False
        self._counters_due = self._flush_deadline = 0.0  # time.monotonic()
        self._sent = self._dropped = self._reconnects = self._errors = 0
        self._client: mqtt.Client | None = None
        self._sender: threading.Thread | None = None

    def publish(self, camera: str, document: dict[str, Any]) -> None:
        """Queue a verdict for ``<prefix>/<box>/<camera>/verdict``; never blocks or raises."""
        try:
            check_camera_id(camera)  # a topic level: no "/", "+" or "#"
            self._enqueue(_Message(f"{self.base}/{camera}/verdict", encode(document),
                                   self.config.qos))
        except Exception as exc:  # an Output must not raise: count it and go on
            self._refuse("a verdict", exc)

    def on_alarm(self, alarm: Alarm) -> None:
        """Queue an alarm raised or cleared for ``<prefix>/<box>/alarms``."""
        try:
            self._enqueue(_Message(f"{self.base}/alarms", encode(alarm.document()),
                                   max(self.config.qos, STATUS_QOS)))
        except Exception as exc:
            self._refuse("an alarm", exc)

    def start(self) -> None:
        """Connect in the background (a broker that is down now is retried with backoff)."""
        with self._cond:
            if self._closing:
                raise RuntimeError("MqttOutput is closed")
            if self._client is not None:
                return
            self._client = client = self._make_client()
            self._down_since = self._clock()
        client.connect_async(self.host, self.port, self.config.keepalive_s)
        client.loop_start()
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender",
                                        daemon=True)
        self._sender.start()
        logger.info("MQTT: publishing to %s as %s under %s/", self.broker, self.client_id,
                    self.base)

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Flush what the broker takes within ``timeout_s``, publish the retained
        "offline" status, disconnect and join the threads. Idempotent."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._flush_deadline = time.monotonic() + timeout_s / 2
            self._cond.notify_all()
            client, sender = self._client, self._sender
        if client is None or sender is None:
            return
        sender.join(timeout_s / 2 + _IDLE_WAIT_S)
        if self.stats()["connected"]:  # a clean stop: not the will, but the same state
            info = client.publish(self.status_topic,
                                  self._status("offline", self._clock(), "stopped"),
                                  STATUS_QOS, retain=True)
            try:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            except (ValueError, RuntimeError) as exc:
                logger.warning("MQTT: could not publish the offline status: %s", exc)
        client.disconnect()
        client.loop_stop()  # joins paho's thread; its reconnect wait checks every second
        with self._cond:
            lost = len(self._buffer) + len(self._window)
            self._buffer.clear()
            self._window.clear()
            self._dropped += lost
            self._connected = False
        if lost:
            logger.warning("MQTT: %d message(s) not delivered before close", lost)
        logger.info("MQTT: closed (%s)", self.stats())

    def stats(self) -> dict[str, Any]:
        """connected, queued, inflight (handed to paho), sent, dropped, reconnects, errors."""
        with self._cond:
            return {"connected": self._connected, "queued": len(self._buffer),
                    "inflight": len(self._window), "sent": self._sent,
                    "dropped": self._dropped, "reconnects": self._reconnects,
                    "errors": self._errors}

    def conditions(self) -> list[Condition]:
        """``output_down`` while the broker has been away longer than keepalive_s."""
        with self._cond:
            if self._client is None or self._closing or self._down_since is None:
                return []
            down_ns, reason = self._clock() - self._down_since, self._last_error
        if down_ns < self._grace_ns:
            return []
        return [Condition("output_down", f"MQTT broker {self.broker} unreachable for "
                                         f"{down_ns / 1e9:.0f} s ({reason})")]

    def _make_client(self) -> mqtt.Client:
        config, password = self.config, None
        if config.username is not None:
            password = self._environ.get(config.password_env)
            if not password:
                raise ConfigError([f"outputs.mqtt.username: {config.username!r} needs its "
                                   f"password in the environment variable "
                                   f"{config.password_env} (outputs.mqtt.password_env), "
                                   f"which is not set"])
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv311)
        client.on_log = self._on_log
        client.suppress_exceptions = True  # a failing callback is logged; the loop goes on
        # Set before connecting, so a box killed or cut off reads "offline" too.
        # Its time is when the broker sends it, which the box cannot know: null.
        client.will_set(self.status_topic, self._status("offline", None, "connection lost"),
                        STATUS_QOS, retain=True)
        client.reconnect_delay_set(config.reconnect_min_s, config.reconnect_max_s)
        # Our whole window in flight at once, plus the status messages: QoS 1/2 messages
        # unacknowledged when the connection drops stay in paho and are resent on reconnect.
        client.max_inflight_messages_set(INFLIGHT + 2)
        if config.username is not None:
            client.username_pw_set(config.username, password)
        tls_files = (config.tls_ca, config.tls_cert, config.tls_key)
        if self.tls:
            try:
                client.tls_set(*(None if f is None else str(f) for f in tls_files))
            except (OSError, ValueError) as exc:
                raise ConfigError([f"outputs.mqtt.tls_*: {exc}"]) from exc
        elif any(tls_files):
            logger.warning("MQTT: tls_ca/tls_cert/tls_key are ignored on mqtt://; use mqtts://")
        client.on_connect = self._on_connect
        client.on_connect_fail = lambda *_: self._note_down("cannot connect")
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _status(self, state: str, since_ns: int | None, reason: str | None = None) -> bytes:
        return encode({"state": state, "box": self.box_id, "since_ns": since_ns,
                      "reason": reason})

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self._note_down(f"refused: {reason}")
            return
        # The status goes before anything else on this connection, even paho's resends.
        info = client.publish(self.status_topic, self._status("online", self._clock()),
                              STATUS_QOS, retain=True)
        with self._cond:
            self._status_mids.add(info.mid)
            if self._ever_connected:
                self._reconnects += 1
            self._connected = self._ever_connected = True
            self._down_since = None
            self._last_error = ""
            self._drop_unwritten()
            self._resend = bool(self._window)
            self._counters_due = time.monotonic()
            self._cond.notify_all()
        logger.info("MQTT: connected to %s", self.broker)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        with self._cond:
            was_connected, self._connected = self._connected, False
            if self._down_since is None:
                self._down_since = self._clock()
            self._drop_unwritten()
            closing = self._closing
        if was_connected and not closing:
            self._note_down(f"connection lost: {reason}")

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        # Runs under paho's message lock: take ours only, and call nothing of paho's.
        with self._cond:
            if self._window.pop(mid, None) is not None:
                self._sent += 1
            elif mid in self._status_mids:
                self._status_mids.discard(mid)
            else:
                self._early.add(mid)
            self._cond.notify_all()

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, text: str) -> None:
        # paho says "not connected" at error level on every retry (_note_down says it once);
        # only an exception caught in one of our callbacks is worth more than debug.
        failed = text.startswith("Caught exception")
        logger.log(logging.ERROR if failed else logging.DEBUG, "MQTT (paho): %s", text)

    def _note_down(self, reason: str) -> None:
        """Remember why the broker is away; log each new reason once, not every retry."""
        with self._cond:
            new, self._last_error = reason != self._last_error, reason
            queued = len(self._buffer)
        if new:
            logger.warning("MQTT: broker %s: %s; %d message(s) buffered, retrying every "
                           "%.1f..%.1f s", self.broker, reason, queued,
                           self.config.reconnect_min_s, self.config.reconnect_max_s)

    def _drop_unwritten(self) -> None:
        """QoS 0 messages paho had not written when the connection went are gone (paho
        clears them on reconnect): count them. QoS 1/2 ones stay for paho to resend."""
        gone = [mid for mid, qos in self._window.items() if qos == 0]
        for mid in gone:
            del self._window[mid]
        self._dropped += len(gone)

    # -- the buffer, and the sender: the one thread that hands paho what it holds ---------

    def _refuse(self, what: str, exc: Exception) -> None:
        logger.warning("MQTT: dropped %s that cannot be sent: %s", what, exc)
        with self._cond:
            self._dropped += 1

    def _enqueue(self, message: _Message) -> None:
        with self._cond:
            if self._closing:
                self._dropped += 1
                return
            if len(self._buffer) >= self.config.buffer:
                self._buffer.popleft()
                self._dropped += 1
                if not self._overflowing:
                    logger.warning("MQTT: buffer full (%d messages); dropping the oldest",
                                   self.config.buffer)
                self._overflowing = True
            self._buffer.append(message)
            self._cond.notify_all()

    def _send_loop(self) -> None:
        while True:
            try:  # the one failure boundary: log, count, go on
                message = self._next_message()
                if message is None:
                    return
                if message == "counters":
                    message = self._counters_message()
                if isinstance(message, _Message):
                    self._hand_over(message)
            except Exception:
                logger.exception("MQTT: the sender failed; going on")
                with self._cond:
                    self._errors += 1
                    self._cond.wait(0.1)

    def _next_message(self) -> _Message | str | None:
        """The next message to hand paho, "counters" when they are due, or None to end."""
        with self._cond:
            while True:
                if self._resend and not self._window:
                    self._resend = False
                idle = not (self._buffer or self._window)
                if self._closing and (idle or not self._connected
                                      or time.monotonic() >= self._flush_deadline):
                    return None
                wait = _IDLE_WAIT_S
                if self._connected and not self._resend and len(self._window) < INFLIGHT:
                    due = self._counters_due - time.monotonic()
                    if self._counters is not None and not self._closing and due <= 0:
                        self._counters_due = time.monotonic() + self.config.counters_interval_s
                        return "counters"
                    if self._buffer:
                        return self._buffer.popleft()
                    self._overflowing = False
                    if self._counters is not None:
                        wait = min(wait, max(due, 0.001))
                self._cond.wait(wait)

    def _counters_message(self) -> _Message | None:
        assert self._counters is not None
        try:
            payload = encode({"box": self.box_id, "at_ns": self._clock(),
                             "cameras": self._counters()})
        except Exception:
            logger.exception("MQTT: could not read the counters")
            with self._cond:
                self._errors += 1
            return None
        return _Message(f"{self.base}/counters", payload, self.config.qos, retain=True)

    def _hand_over(self, message: _Message) -> None:
        assert self._client is not None
        info = self._client.publish(message.topic, message.payload, message.qos,
                                    message.retain)
        # paho keeps a QoS 1/2 message unless its queue is full; QoS 0 only when connected.
        kept = info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS or (
            message.qos > 0 and info.rc != MQTTErrorCode.MQTT_ERR_QUEUE_SIZE)
        with self._cond:
            if kept and info.mid in self._early:
                self._early.discard(info.mid)
                self._sent += 1
            elif kept:
                self._window[info.mid] = message.qos
            else:  # first again once the connection is back (counters: newer ones follow)
                if not message.retain and len(self._buffer) < self.config.buffer:
                    self._buffer.appendleft(message)
                elif not message.retain:  # the buffer filled meanwhile: it is the oldest
                    self._dropped += 1
                self._cond.wait(0.05)  # paho saw the drop; on_disconnect is on its way
