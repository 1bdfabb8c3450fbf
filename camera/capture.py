"""Capture threads: one per camera, read → stamp → publish, never blocking on the consumer.

Each thread owns its source and its ZeroMQ socket. A full frame queue means the
inspector is behind: the frame is dropped and counted, capture goes on. A
watchdog reopens a source with exponential backoff after a read error or when
no frame came for ``no_frame_timeout_s``. All threads share one stop event.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import zmq

from camera.base import FrameSource, SourceFrame
from camera.sources import make_source
from inspector.bus import FrameSender, TriggerReceiver
from inspector.config import CameraConfig
from inspector.errors import SourceError, WireError

logger = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 5.0
# Frames still queued when a sender closes get this long to reach a live receiver.
SENDER_LINGER_MS = 500
_POLL_S = 0.1  # how often idle loops look at the stop event
_IDLE_S = 0.005  # pause after a source had no frame, so a silent source costs no CPU


@dataclass
class CaptureStats:
    """Per-camera counters. Written by the capture thread only; read by anyone.

    ``captured == published + dropped`` always holds between frames.
    """

    captured: int = 0
    published: int = 0
    dropped: int = 0  # consumer behind (frame queue full)
    reconnects: int = 0  # reopen attempts after a failure
    read_errors: int = 0
    triggers_missed: int = 0  # software triggers that arrived while the queue was full
    last_frame_monotonic: float | None = None
    state: str = "starting"  # starting, running, reconnecting, finished, stopped

    def snapshot(self) -> dict[str, Any]:
        data = asdict(self)
        last = data.pop("last_frame_monotonic")
        data["last_frame_age_s"] = None if last is None else round(time.monotonic() - last, 3)
        return data


class CaptureThread(threading.Thread):
    """Runs one camera until the stop event is set or a finite source ends."""

    def __init__(
        self,
        config: CameraConfig,
        source: FrameSource,
        endpoint: str,
        stop_event: threading.Event,
        context: zmq.Context | None = None,
        hwm: int = 4,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__(name=f"capture-{config.id}", daemon=True)
        self.config, self.source, self.endpoint = config, source, endpoint
        self.stats = CaptureStats()
        self._stop_event = stop_event
        self._context = context or zmq.Context.instance()
        self._hwm = hwm
        self._clock = clock
        self._triggers: queue.Queue[str | None] = queue.Queue(maxsize=64)
        self._seq = 0
        self._backoff_s = config.watchdog.backoff_initial_s

    def trigger(self, part_id: str | None = None) -> None:
        """Capture one frame for ``part_id`` (software-trigger mode)."""
        try:
            self._triggers.put_nowait(part_id)
        except queue.Full:
            self.stats.triggers_missed += 1
            logger.warning(
                "camera %s: trigger for part %s missed, queue full", self.config.id, part_id
            )

    def run(self) -> None:
        sender = FrameSender(self.endpoint, self._context, self._hwm)
        try:
            self._loop(sender)
        except Exception:  # a bug must not pass silently, nor take other cameras down
            logger.exception("camera %s: capture thread failed", self.config.id)
        finally:
            self.source.close()
            sender.close(linger_ms=SENDER_LINGER_MS)
            if self.stats.state != "finished":
                self.stats.state = "stopped"

    def _loop(self, sender: FrameSender) -> None:
        period = 1.0 / self.config.fps if self.config.fps else 0.0
        next_due = time.monotonic()
        opened = False
        while not self._stop_event.is_set():
            if not opened:
                opened = self._open()
                continue
            triggered, part_id = True, None
            if self.config.trigger == "software":
                triggered, part_id = self._wait_trigger()
                if not triggered and not self.source.live:
                    continue
            elif period:
                delay = next_due - time.monotonic()
                if delay > 0 and self._stop_event.wait(delay):
                    break
                next_due = max(next_due + period, time.monotonic() - period)
            try:
                frame = self.source.read()
            except SourceError as exc:
                self.stats.read_errors += 1
                logger.warning("camera %s: %s", self.config.id, exc)
                opened = self._fail()
                continue
            if frame is None:
                if self.source.finished:
                    logger.info("camera %s: %s ended", self.config.id, self.source.describe())
                    self.stats.state = "finished"
                    return
                if self._stop_event.wait(_IDLE_S):  # no frame yet: don't spin
                    break
                if self._stalled():
                    logger.warning(
                        "camera %s: no frame for %.1f s, reopening",
                        self.config.id,
                        self.config.watchdog.no_frame_timeout_s,
                    )
                    opened = self._fail()
                continue
            self.stats.last_frame_monotonic = time.monotonic()
            self._backoff_s = self.config.watchdog.backoff_initial_s
            if self.config.trigger == "software" and not triggered:
                continue  # a live source read only to keep its buffer fresh
            self._publish(sender, frame, part_id)

    def _wait_trigger(self) -> tuple[bool, str | None]:
        """(True, part id) for a pending trigger; a live source must not wait here."""
        try:
            if self.source.live:
                return True, self._triggers.get_nowait()
            return True, self._triggers.get(timeout=_POLL_S)
        except queue.Empty:
            return False, None

    def _open(self) -> bool:
        if self.stats.state != "starting":
            self.stats.reconnects += 1
        try:
            self.source.open()
        except SourceError as exc:
            logger.warning("camera %s: %s", self.config.id, exc)
            self._fail()
            return False
        logger.info("camera %s: opened %s", self.config.id, self.source.describe())
        self.stats.state = "running"
        self.stats.last_frame_monotonic = time.monotonic()  # the no-frame clock starts now
        return True

    def _fail(self) -> bool:
        """Close the source and wait out the backoff; returns False (source not open)."""
        self.source.close()
        self.stats.state = "reconnecting"
        self._stop_event.wait(self._backoff_s)
        self._backoff_s = min(self._backoff_s * 2, self.config.watchdog.backoff_max_s)
        return False

    def _stalled(self) -> bool:
        last = self.stats.last_frame_monotonic
        return (
            last is not None and time.monotonic() - last > self.config.watchdog.no_frame_timeout_s
        )

    def _publish(self, sender: FrameSender, frame: SourceFrame, part_id: str | None) -> None:
        stats = self.stats
        try:
            sent = sender.send(
                frame.image,
                self.config.id,
                self._seq,
                self._clock(),
                part_id or frame.part_id,
                self.config.encoding,
                self.config.jpeg_quality,
            )
        except WireError as exc:  # the source gave something that is not an image we carry
            stats.read_errors += 1
            logger.warning("camera %s: unusable frame: %s", self.config.id, exc)
            return
        self._seq += 1
        stats.captured += 1
        if sent:
            stats.published += 1
        else:
            stats.dropped += 1


class CaptureGroup:
    """All configured cameras: started together, stopped in reverse order by one event."""

    def __init__(
        self,
        cameras: Iterable[CameraConfig],
        endpoint: str,
        stop_event: threading.Event,
        context: zmq.Context | None = None,
        hwm: int = 4,
        source_factory: Callable[[CameraConfig], FrameSource] = make_source,
    ) -> None:
        self.stop_event = stop_event
        cameras = list(cameras)
        self.threads = [
            CaptureThread(cfg, source_factory(cfg), endpoint, stop_event, context, hwm)
            for cfg in cameras if cfg.type != "remote"
        ]
        # Captured on other hosts: their counters are kept there (inspector capture --forward)
        self.remote = [cfg.id for cfg in cameras if cfg.type == "remote"]
        self._by_id = {thread.config.id: thread for thread in self.threads}
        self._context = context or zmq.Context.instance()
        self.listener: threading.Thread | None = None  # software triggers from the bus
        self.triggers_rejected = 0  # trigger messages that were malformed or named no camera

    def start(self, trigger_endpoint: str | None = None) -> None:
        """Start every camera, and a trigger listener when ``trigger_endpoint`` is given."""
        if trigger_endpoint is not None:
            receiver = TriggerReceiver(trigger_endpoint, self._context)  # bind errors surface here
            self.listener = threading.Thread(
                target=self._listen, args=(receiver,), name="capture-triggers", daemon=True
            )
            self.listener.start()
        for thread in self.threads:
            thread.start()

    def _listen(self, receiver: TriggerReceiver) -> None:
        try:
            while not self.stop_event.is_set():
                trigger = receiver.recv(timeout_ms=int(_POLL_S * 1000))
                self.triggers_rejected = receiver.malformed
                if trigger is None:
                    continue
                try:
                    self.trigger(*trigger)
                except SourceError as exc:
                    receiver.malformed += 1
                    logger.warning("ignored trigger: %s", exc)
        finally:
            receiver.close()

    def stop(self, timeout_s: float = JOIN_TIMEOUT_S) -> list[str]:
        """Set the stop event and join every thread; returns the names of any that did not exit."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout_s
        stuck = []
        started = [self.listener, *self.threads] if self.listener else self.threads
        for thread in reversed(started):
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                stuck.append(thread.name)
                logger.error("%s did not stop (blocked in a read?)", thread.name)
        return stuck

    def trigger(self, camera_id: str, part_id: str | None = None) -> None:
        try:
            thread = self._by_id[camera_id]
        except KeyError:
            raise SourceError(f"no camera {camera_id!r}") from None
        thread.trigger(part_id)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per camera; a remote camera's state is "remote" and its counters are 0 here."""
        stats = {thread.config.id: thread.stats.snapshot() for thread in self.threads}
        for camera in self.remote:
            stats[camera] = CaptureStats(state="remote").snapshot()
        return stats

    def all_finished(self) -> bool:
        """Every local source ended (a remote camera may always send more)."""
        return not self.remote and all(not thread.is_alive() for thread in self.threads)
