"""Cameras on one host, inspection on another: ``inspector capture --forward`` sends a
camera's frames over tcp:// to a box that inspects them as a ``type = "remote"`` camera,
whose monitor sees it deliver and sees it go down when the capture host stops."""

from __future__ import annotations

import threading
import time
from io import StringIO
from pathlib import Path
from typing import Any

import pytest

from camera.monitor import run_capture
from inspector.config import parse_config
from inspector.errors import ConfigError
from inspector.inspection import DEMO_MODEL, run_pipeline
from tests.conftest import free_tcp_port


def _wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.05)


def test_a_remote_camera_is_inspected_here_and_watched_for_frames(tmp_path: Path) -> None:
    port = free_tcp_port()
    inspecting = parse_config({
        "cameras": [{"id": "press4", "type": "remote"}],
        "bus": {"frames": f"tcp://127.0.0.1:{port}",
                "results": f"inproc://results-{id(tmp_path)}"},
        "model": {"path": str(DEMO_MODEL), "intra_op_threads": 1},
        "storage": {"root": str(tmp_path / "store")},
        "web": {"port": 0},
        "alarms": {"camera_down_s": 1.0, "check_interval_s": 0.2},
    }, base_dir=tmp_path)
    capturing = parse_config({
        "cameras": [{"id": "press4", "type": "synthetic", "fps": 20}],
        "bus": {"frames": f"tcp://127.0.0.1:{port}"},
    })
    monitors: list[Any] = []

    class NoUi:  # the pipeline hands its monitor to the UI; keep it instead
        url = "-"

        def __init__(self, _config: Any, _store: Any, _service: Any, monitor: Any,
                     _metrics: Any) -> None:
            monitors.append(monitor)

        def start(self) -> None: ...
        def close(self) -> None: ...

    box_stop, camera_stop = threading.Event(), threading.Event()
    totals: dict[str, Any] = {}
    box = threading.Thread(target=lambda: totals.update(
        run_pipeline(inspecting, box_stop, StringIO(), web_server=NoUi)))
    camera_host = threading.Thread(target=run_capture, args=(capturing, camera_stop, StringIO()),
                                   kwargs={"forward": True})
    box.start()
    try:
        _wait(lambda: monitors, 30, "the box started")
        monitor = monitors[0]
        assert not monitor.readiness()[0]  # nothing has arrived yet
        camera_host.start()
        _wait(lambda: monitor.readiness()[0], 20, "ready once the remote camera delivers")
        _wait(lambda: monitor.totals()["press4"]["inspected"] > 0, 20, "inspected here")
        camera_stop.set()
        camera_host.join(30)
        _wait(lambda: any(a.kind == "camera_down" and a.subject == "press4"
                          for a in monitor.board.active()), 10, "camera down")
        assert "no frame from its host" in monitor.board.active()[0].reason
        assert not monitor.readiness()[0]
    finally:
        camera_stop.set()
        box_stop.set()
        box.join(60)
    assert not box.is_alive()
    counts = totals["press4"]
    assert counts["captured"] == 0  # counted on the capture host
    assert counts["received"] == counts["inspected"] + counts["stale"] > 0
    assert counts["passed"] + counts["rejected"] + counts["errors"] == counts["received"]


def test_a_remote_camera_needs_a_bus_other_hosts_reach() -> None:
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.type: a remote camera"):
        parse_config({"cameras": [{"id": "press4", "type": "remote"}]})
    parse_config({"cameras": [{"id": "press4", "type": "remote"}],
                  "bus": {"frames": "tcp://0.0.0.0:5555"}})
