"""The alarm board and the monitor's rules, each condition pushed past its threshold with a
clock the test moves; the store (real SQLite) keeps the history."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from inspector.config import parse_config
from inspector.monitor import ALARM_KINDS, Alarm, AlarmBoard, Condition, Monitor
from inspector.store import Store


def test_the_board_raises_once_keeps_the_newest_reason_and_clears() -> None:
    now = [100]
    board = AlarmBoard(clock=lambda: now[0])
    heard: list[Alarm] = []
    board.subscribe(heard.append)
    board.subscribe(lambda alarm: 1 / 0)  # a broken listener: the others still hear
    down = Condition("camera_down", "no frame for 6 s", "cam1")
    assert [a.active for a in board.update([down])] == [True]
    now[0] = 200
    assert board.update([Condition("camera_down", "no frame for 9 s", "cam1")]) == []
    assert board.active()[0].reason == "no frame for 9 s"
    assert board.active()[0].raised_ns == 100
    cleared = board.update([])
    assert [(a.kind, a.subject, a.raised_ns, a.cleared_ns) for a in cleared] == [
        ("camera_down", "cam1", 100, 200)]
    assert [a.active for a in heard] == [True, False]
    assert board.active() == []


def test_an_unknown_alarm_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown alarm kind"):
        Condition("camera_exploded", "boom")


class FakeGroup:
    def __init__(self) -> None:
        self.stop_event = threading.Event()
        self.cameras = {"cam1": {"captured": 0, "state": "running", "reconnects": 0},
                        "trig": {"captured": 0, "state": "running", "reconnects": 0}}

    def stats(self) -> dict[str, dict[str, Any]]:
        return {camera: dict(stats) for camera, stats in self.cameras.items()}


class FakeService:
    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {}
        self.capacity: str | None = None
        self.dead: list[str] = []
        self.drift = SimpleNamespace(check=lambda card: [])
        self.detector = SimpleNamespace(card=None, model=SimpleNamespace(sha256="ab" * 32))

    def accounting(self) -> dict[str, dict[str, int]]:
        return self.counts

    def capacity_alarm(self) -> str | None:
        return self.capacity

    def dead_workers(self) -> list[str]:
        return self.dead


class FakeRecorder:
    name = "recorder"
    alarm: str | None = None
    alive = True

    def is_alive(self) -> bool:
        return self.alive


@pytest.fixture
def box(tmp_path: Path) -> Any:
    config = parse_config({
        "cameras": [{"id": "cam1", "type": "synthetic"},
                    {"id": "trig", "type": "synthetic", "trigger": "software"}],
        "alarms": {"camera_down_s": 5, "error_window_s": 60, "error_rate": 0.2,
                   "error_min_count": 5, "disk_low_percent": 100},
    }, base_dir=tmp_path)
    store = Store(tmp_path / "store")
    now = [1000.0]
    box = SimpleNamespace(group=FakeGroup(), service=FakeService(), recorder=FakeRecorder(),
                          store=store, now=now)
    box.monitor = Monitor(config, store, box.recorder, box.service, box.group,
                          clock=lambda: now[0])
    yield box
    store.close()


def _kinds(box: Any) -> set[tuple[str, str]]:
    box.monitor.check()
    return {(a.kind, a.subject) for a in box.monitor.board.active()}


def test_a_free_running_camera_is_down_after_camera_down_s_without_a_frame(box: Any) -> None:
    box.group.cameras["cam1"]["captured"] = 10
    assert _kinds(box) == set()
    box.now[0] += 4.9
    assert _kinds(box) == set()
    box.now[0] += 0.2  # 5.1 s without a new frame
    assert _kinds(box) == {("camera_down", "cam1")}
    box.group.cameras["cam1"]["captured"] = 11  # a frame again: cleared
    assert _kinds(box) == set()
    # A triggered camera may wait for parts as long as it likes; a failing source is down.
    box.now[0] += 60
    box.group.cameras["cam1"]["captured"] = 12
    assert _kinds(box) == set()
    box.group.cameras["trig"]["state"] = "reconnecting"
    assert _kinds(box) == {("camera_down", "trig")}


def test_a_capture_thread_that_ended_is_a_camera_down_until_the_box_stops(box: Any) -> None:
    box.group.cameras["cam1"]["state"] = "stopped"
    assert _kinds(box) == {("camera_down", "cam1")}
    box.group.stop_event.set()
    assert _kinds(box) == set()


def test_the_error_rate_alarm_judges_the_window_and_clears(box: Any) -> None:
    counts = box.service.counts["cam1"] = {"passed": 0, "rejected": 0, "errors": 0}
    box.group.cameras["cam1"]["captured"] = 1
    assert _kinds(box) == set()
    counts.update(passed=40, errors=4)  # 4 errors: under error_min_count
    box.now[0] += 1
    assert _kinds(box) == set()
    counts.update(passed=50, errors=20)  # 20 of 70 errors (29%)
    box.now[0] += 1
    assert _kinds(box) == {("error_rate", "cam1")}
    assert "20 of the last 70 verdicts were errors" in box.monitor.board.active()[0].reason
    for _ in range(70):  # a minute of clean verdicts pushes the errors out of the window
        box.now[0] += 1
        counts["passed"] += 10
        box.group.cameras["cam1"]["captured"] += 10
        box.monitor.check()
    assert _kinds(box) == set()


def test_store_recorder_capacity_and_threads_become_alarms(box: Any) -> None:
    box.group.cameras["cam1"]["captured"] = 1
    box.recorder.alarm = "recorder backlog: 3 verdicts not recorded"
    box.service.capacity = "capacity: inspection busy 99% of the last 5 s"
    box.service.dead = ["inspector-1"]
    box.recorder.alive = False
    assert _kinds(box) == {("recorder_backlog", ""), ("capacity", ""), ("worker_dead", "")}
    dead = next(a for a in box.monitor.board.active() if a.kind == "worker_dead")
    assert "inspector-1" in dead.reason and "recorder" in dead.reason
    ready, checks = box.monitor.readiness()
    assert not ready and checks["threads"]["ended"] == ["inspector-1", "recorder"]
    box.monitor.add_source(lambda: [Condition("output_down", "broker away", "mqtt")])
    assert ("output_down", "mqtt") in _kinds(box)


def test_disk_low_follows_the_configured_share(box: Any, tmp_path: Path) -> None:
    box.group.cameras["cam1"]["captured"] = 1
    assert ("disk_low", "") not in _kinds(box)  # the limit is 100%
    used = box.monitor.disk_used()
    assert used is not None and 0 < used < 1
    config = box.monitor.config.model_copy(update={"alarms": box.monitor.config.alarms
                                                   .model_copy(update={"disk_low_percent":
                                                                       used * 100 - 1})})
    box.monitor.config = config
    assert ("disk_low", "") in _kinds(box)


def test_the_history_is_stored_and_a_restart_closes_what_was_left_open(box: Any) -> None:
    box.group.cameras["trig"]["state"] = "reconnecting"
    box.monitor.check()
    [open_alarm] = box.store.alarms(active_only=True)
    assert open_alarm["kind"] == "camera_down" and open_alarm["subject"] == "trig"
    assert box.store.close_open_alarms() == 1  # what the next start does after a crash
    [closed] = box.store.alarms()
    assert not closed["active"] and "the box restarted" in closed["reason"]


def test_every_kind_is_named_once() -> None:
    assert len(set(ALARM_KINDS)) == len(ALARM_KINDS)
