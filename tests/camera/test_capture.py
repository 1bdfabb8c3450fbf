"""Capture threads: drop counting, watchdog reopen with backoff, trigger mode, clean stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import zmq

from camera.base import FrameSource, SourceFrame
from camera.capture import CaptureGroup, CaptureThread
from inspector.bus import FrameReceiver, send_trigger
from inspector.config import CameraConfig, SyntheticCamera
from inspector.errors import SourceError

FAST_WATCHDOG = {
    "no_frame_timeout_s": 0.2,
    "backoff_initial_s": 0.01,
    "backoff_max_s": 0.04,
}


def camera(id: str = "cam1", **extra: object) -> CameraConfig:
    return SyntheticCamera.model_validate(
        {"id": id, "type": "synthetic", "watchdog": FAST_WATCHDOG, **extra}
    )


class ScriptedSource(FrameSource):
    """A source whose opens and reads follow a script, then deliver frames forever.

    ``opens``: outcomes of successive open() calls (True ok, False fail), then always ok.
    ``reads``: outcomes of successive read() calls: "frame", "error", "none", "end",
    then frames forever.
    """

    def __init__(self, opens: list[bool] = (), reads: list[str] = (), live: bool = False) -> None:
        super().__init__(live)
        self.opens, self.reads = list(opens), list(reads)
        self.open_calls = self.read_calls = self.close_calls = 0

    def open(self) -> None:
        self.open_calls += 1
        if self.opens and not self.opens.pop(0):
            raise SourceError("camera unplugged")

    def read(self) -> SourceFrame | None:
        self.read_calls += 1
        step = self.reads.pop(0) if self.reads else "frame"
        if step == "error":
            raise SourceError("read failed")
        if step == "none":
            return None
        if step == "end":
            self.finished = True
            return None
        if step == "bad":
            return SourceFrame(np.zeros((4, 4, 3), np.int64))
        time.sleep(0.001)  # a real camera takes time
        return SourceFrame(np.full((16, 16, 3), self.read_calls % 256, np.uint8), "p")

    def close(self) -> None:
        self.close_calls += 1


@pytest.fixture
def receiver(zmq_context: zmq.Context) -> Iterator[FrameReceiver]:
    rx = FrameReceiver("inproc://capture-test", zmq_context, hwm=1000)
    yield rx
    rx.close()


@pytest.fixture
def run_group(
    zmq_context: zmq.Context,
) -> Iterator[Callable[..., CaptureGroup]]:
    groups: list[CaptureGroup] = []

    def start(sources: dict[str, FrameSource], hwm: int = 1000, **extra: object) -> CaptureGroup:
        configs = [camera(cam_id, **extra) for cam_id in sources]
        group = CaptureGroup(
            configs,
            "inproc://capture-test",
            threading.Event(),
            zmq_context,
            hwm,
            source_factory=lambda cfg: sources[cfg.id],
        )
        groups.append(group)
        group.start()
        return group

    yield start
    for group in groups:
        assert group.stop() == []


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def test_frames_are_stamped_and_counted(
    run_group: Callable[..., CaptureGroup], receiver: FrameReceiver
) -> None:
    group = run_group({"cam1": ScriptedSource()})
    frames = [receiver.recv(timeout_ms=2000) for _ in range(10)]
    assert [f.header.seq for f in frames if f] == list(range(10))
    stamps = [f.header.ts_ns for f in frames if f]
    assert stamps == sorted(stamps) and abs(stamps[0] - time.time_ns()) < 60e9
    stats = group.stats()["cam1"]
    assert stats["state"] == "running"
    assert stats["captured"] == stats["published"] + stats["dropped"]


def test_watchdog_reopens_after_failures_with_backoff(
    run_group: Callable[..., CaptureGroup], receiver: FrameReceiver
) -> None:
    # fails to open twice, then delivers 3 frames, then a read error, then recovers
    source = ScriptedSource(opens=[False, False], reads=["frame"] * 3 + ["error"])
    group = run_group({"cam1": source})
    wait_until(lambda: group.stats()["cam1"]["published"] >= 10)
    stats = group.stats()["cam1"]
    assert stats["reconnects"] == 3  # two failed opens, one read error
    assert stats["read_errors"] == 1
    assert source.open_calls == 4
    assert stats["state"] == "running"
    seqs = [receiver.recv(timeout_ms=2000).header.seq for _ in range(10)]  # type: ignore[union-attr]
    assert seqs == list(range(10))  # no gap: a failed read is not a captured frame


def test_watchdog_reopens_a_source_that_goes_silent(
    run_group: Callable[..., CaptureGroup],
) -> None:
    source = ScriptedSource(reads=["frame"] + ["none"] * 200, live=True)
    group = run_group({"cam1": source})
    wait_until(lambda: group.stats()["cam1"]["reconnects"] >= 1)
    assert source.close_calls >= 1
    wait_until(lambda: group.stats()["cam1"]["published"] >= 2)  # recovered after the reopen


def test_backoff_grows_to_its_cap(run_group: Callable[..., CaptureGroup]) -> None:
    source = ScriptedSource(opens=[False] * 1000)
    group = run_group({"cam1": source})
    thread = group.threads[0]
    wait_until(lambda: source.open_calls >= 6)
    assert thread._backoff_s == FAST_WATCHDOG["backoff_max_s"]
    assert group.stats()["cam1"]["state"] == "reconnecting"


def test_a_dead_camera_does_not_stop_the_others(
    run_group: Callable[..., CaptureGroup], receiver: FrameReceiver
) -> None:
    group = run_group({"dead": ScriptedSource(opens=[False] * 1000), "alive": ScriptedSource()})
    wait_until(lambda: receiver.recv(timeout_ms=100) is not None and receiver.received["alive"] > 5)
    assert group.stats()["dead"]["published"] == 0


def test_slow_consumer_makes_capture_drop_not_block(
    run_group: Callable[..., CaptureGroup], zmq_context: zmq.Context
) -> None:
    slow = FrameReceiver("inproc://capture-test", zmq_context, hwm=1)
    try:
        group = run_group({"cam1": ScriptedSource()}, hwm=1)
        wait_until(lambda: group.stats()["cam1"]["dropped"] >= 20)
        assert group.stop() == []
        received = len(list(slow.drain(quiet_ms=300)))
    finally:
        slow.close()
    stats = group.stats()["cam1"]
    assert stats["captured"] == stats["published"] + stats["dropped"]
    assert received == stats["published"]


def test_finite_source_finishes(run_group: Callable[..., CaptureGroup]) -> None:
    group = run_group({"cam1": ScriptedSource(reads=["frame", "frame", "end"])})
    wait_until(group.all_finished)
    stats = group.stats()["cam1"]
    assert stats["state"] == "finished"
    assert stats["captured"] == 2


def test_unusable_frame_is_counted_and_capture_goes_on(
    run_group: Callable[..., CaptureGroup], receiver: FrameReceiver
) -> None:
    group = run_group({"cam1": ScriptedSource(reads=["bad", "frame"])})
    frame = receiver.recv(timeout_ms=2000)
    assert frame is not None and frame.header.seq == 0
    assert group.stats()["cam1"]["read_errors"] == 1


def test_software_trigger_captures_one_frame_per_trigger(
    run_group: Callable[..., CaptureGroup], receiver: FrameReceiver
) -> None:
    source = ScriptedSource()
    group = run_group({"cam1": source}, trigger="software")
    assert receiver.recv(timeout_ms=300) is None  # nothing without a trigger
    group.trigger("cam1", "part-A")
    group.trigger("cam1", None)
    first, second = receiver.recv(timeout_ms=2000), receiver.recv(timeout_ms=2000)
    assert first is not None and first.header.part_id == "part-A"
    assert second is not None and second.header.part_id == "p"  # the source's own id
    assert receiver.recv(timeout_ms=200) is None
    assert source.read_calls == 2
    with pytest.raises(SourceError, match="no camera 'nope'"):
        group.trigger("nope")


def test_software_trigger_on_a_live_source_keeps_it_fresh(
    run_group: Callable[..., CaptureGroup], receiver: FrameReceiver
) -> None:
    source = ScriptedSource(live=True)
    group = run_group({"cam1": source}, trigger="software")
    wait_until(lambda: source.read_calls > 20)  # read continuously, published never
    assert group.stats()["cam1"]["published"] == 0
    reads_before = source.read_calls
    group.trigger("cam1", "part-B")
    frame = receiver.recv(timeout_ms=2000)
    assert frame is not None and frame.header.part_id == "part-B"
    assert frame.image[0, 0, 0] > reads_before % 256 or reads_before > 255  # a fresh frame


def test_trigger_queue_overflow_is_counted(zmq_context: zmq.Context) -> None:
    thread = CaptureThread(
        camera(trigger="software"),
        ScriptedSource(),
        "inproc://unused",
        threading.Event(),
        zmq_context,
    )
    for n in range(70):  # never started: nothing consumes the queue of 64
        thread.trigger(str(n))
    assert thread.stats.triggers_missed == 6


def test_stop_ends_every_thread_quickly(run_group: Callable[..., CaptureGroup]) -> None:
    slow_backoff = {"backoff_initial_s": 30.0, "backoff_max_s": 60.0}
    sources = {
        "a": ScriptedSource(),
        "b": ScriptedSource(opens=[False] * 10),
        "c": ScriptedSource(live=True),
    }
    group = run_group(sources, watchdog=slow_backoff)
    wait_until(lambda: sources["b"].open_calls >= 1)  # b now sleeps in a 30 s backoff
    started = time.monotonic()
    assert group.stop(timeout_s=5.0) == []
    assert time.monotonic() - started < 5.0
    assert not [t for t in threading.enumerate() if t.name.startswith("capture-")]
    assert {s["state"] for s in group.stats().values()} == {"stopped"}
    assert all(source.close_calls >= 1 for source in sources.values())


def test_fps_limits_the_rate(run_group: Callable[..., CaptureGroup]) -> None:
    started = time.monotonic()
    free = run_group({"free": ScriptedSource()})
    paced = run_group({"paced": ScriptedSource()}, fps=5)
    time.sleep(1.0)
    paced_count = paced.stats()["paced"]["captured"]
    free_count = free.stats()["free"]["captured"]
    elapsed = time.monotonic() - started
    # side by side over the same interval: at most one frame per 0.2 s, plus the first
    assert paced_count <= 5 * elapsed + 2
    assert free_count > 2 * paced_count


def test_triggers_arrive_over_the_bus(receiver: FrameReceiver, zmq_context: zmq.Context) -> None:
    configs = [camera("cam1", trigger="software")]
    group = CaptureGroup(
        configs,
        "inproc://capture-test",
        threading.Event(),
        zmq_context,
        source_factory=lambda cfg: ScriptedSource(),
    )
    group.start("inproc://triggers-test")
    try:
        raw = zmq_context.socket(zmq.PUSH)
        raw.connect("inproc://triggers-test")
        raw.send(b"not json")
        raw.send(b'{"camera": "cam9", "part_id": "x"}')  # no such camera
        raw.send(b'{"part_id": "x"}')
        raw.close(linger=0)
        send_trigger("inproc://triggers-test", "cam1", "LOT7-0042", zmq_context)
        frame = receiver.recv(timeout_ms=3000)
        wait_until(lambda: group.triggers_rejected == 3)  # the three bad ones, counted
    finally:
        assert group.stop() == []
    assert frame is not None and frame.header.part_id == "LOT7-0042"
    assert receiver.recv(timeout_ms=200) is None
