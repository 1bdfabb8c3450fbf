"""A running box watched from outside: a camera whose source disappears raises "camera down"
on the panel's board, in the stored history, in /metrics and in /readyz, and clears when it
returns; /metrics counts what the pipeline reports. Real pipeline, sockets, store and HTTP."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from camera.base import FrameSource, SourceFrame
from camera.sources import make_source
from inspector.config import CameraConfig, Config, parse_config
from inspector.errors import SourceError
from inspector.inspection import DEMO_MODEL, run_pipeline
from inspector.store import Store
from web.server import WebServer


class Unpluggable(FrameSource):
    """A synthetic camera that can be unplugged: while out, opening and reading fail."""

    def __init__(self, inner: FrameSource) -> None:
        super().__init__(live=True)
        self.inner = inner
        self.plugged = threading.Event()
        self.plugged.set()

    def open(self) -> None:
        if not self.plugged.is_set():
            raise SourceError("device not found")
        self.inner.open()

    def read(self) -> SourceFrame | None:
        if not self.plugged.is_set():
            raise SourceError("device gone")
        return self.inner.read()


def unpluggable(camera_id: str) -> tuple[dict[str, Unpluggable],
                                          Callable[[CameraConfig], FrameSource]]:
    """A source factory that makes ``camera_id``'s source unpluggable, and where the test
    finds that source once the pipeline has made it."""
    made: dict[str, Unpluggable] = {}

    def sources(camera: CameraConfig) -> FrameSource:
        source = make_source(camera)
        if camera.id == camera_id:
            source = made[camera_id] = Unpluggable(source)
        return source

    return made, sources


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _wait(condition: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def test_a_camera_that_disappears_raises_camera_down_everywhere_and_clears(
        tmp_path: Path) -> None:
    token = "t" * 24
    config = parse_config({
        "cameras": [
            {"id": "cam1", "type": "synthetic", "fps": 20},
            {"id": "cam2", "type": "synthetic", "fps": 20, "seed": 3,
             "watchdog": {"backoff_initial_s": 0.1, "backoff_max_s": 0.2}},
        ],
        "bus": {"frames": f"inproc://frames-{id(tmp_path)}",
                "results": f"inproc://results-{id(tmp_path)}"},
        "model": {"path": str(DEMO_MODEL), "intra_op_threads": 1},
        "storage": {"root": str(tmp_path / "store")},
        "web": {"host": "127.0.0.1", "port": 0, "metrics_token": token},
        "alarms": {"camera_down_s": 1.0, "check_interval_s": 0.2},
    }, base_dir=tmp_path)
    unplug, sources = unpluggable("cam2")
    servers: list[Any] = []

    def web(config: Config, store: Store, *live: Any) -> WebServer:
        servers.append(WebServer(config, store, *live))
        return servers[-1]

    stop = threading.Event()
    result: dict[str, Any] = {}
    out = (tmp_path / "out.txt").open("w")
    runner = threading.Thread(target=lambda: result.update(
        run_pipeline(config, stop, out, source_factory=sources, web_server=web)))
    runner.start()
    try:
        server = _wait(lambda: servers and servers[0], 30, "web server up")
        url = _wait(lambda: server.url if server._thread.is_alive() else None, 10, "serving")
        assert _get(url + "healthz")[0] == 200
        _wait(lambda: _get(url + "readyz")[0] == 200, 30, "ready once both cameras deliver")

        unplug["cam2"].plugged.clear()
        _, body = _wait(lambda: (r := _get(url + "readyz"))[0] == 503 and r, 5,
                        "readyz 503 once cam2 is down")
        checks = json.loads(body)["checks"]
        assert not checks["cameras"]["cameras"]["cam2"]["ok"]
        assert checks["cameras"]["cameras"]["cam1"]["ok"]
        assert checks["model"]["ok"] and checks["store"]["ok"] and checks["threads"]["ok"]
        assert _get(url + "metrics")[0] == 401  # the token is set
        samples = _samples(_get(url + "metrics", token)[1])
        assert samples[("inspector_alarms", (("kind", "camera_down"),))] == 1
        assert samples[("inspector_alarm_active",
                        (("kind", "camera_down"), ("subject", "cam2")))] == 1

        unplug["cam2"].plugged.set()
        _wait(lambda: _get(url + "readyz")[0] == 200, 10, "ready again once cam2 is back")
        samples = _samples(_get(url + "metrics", token)[1])
        assert samples[("inspector_alarms", (("kind", "camera_down"),))] == 0
    finally:
        stop.set()
        runner.join(60)
        out.close()
    assert not runner.is_alive()

    with Store(tmp_path / "store") as store:
        history = [a for a in store.alarms() if a["kind"] == "camera_down"]
    assert [(a["subject"], a["active"]) for a in history] == [("cam2", False)]
    assert history[0]["cleared_ns"] > history[0]["raised_ns"]

    # After the run, /metrics' counters are the totals the pipeline reported.
    samples = _samples(servers[0].app.extensions["metrics"].exposition()[0].decode())
    for camera, counts in result.items():
        for key in ("captured", "dropped", "received", "inspected", "stale", "malformed"):
            assert samples[(f"inspector_frames_{key}_total", (("camera", camera),))] == \
                counts[key], (camera, key)
        assert samples[("inspector_verdicts_total", (("camera", camera), ("verdict", "pass")))
                       ] == counts["passed"]
        total = samples[("inspector_latency_seconds_count",
                         (("camera", camera), ("stage", "total")))]
        assert total == counts["passed"] + counts["rejected"] + counts["errors"]
