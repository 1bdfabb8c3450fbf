"""``inspector run`` and ``inspector demo``: cameras, inspection core and recorder in one process.

Components start in data-flow order, last stage first (store, recorder, core,
then the cameras), and stop in reverse: cameras first, then the core drains the
frames still in flight, then the recorder writes every verdict it holds, and only
once its thread has ended is the store closed. So SIGTERM loses nothing that was
already received.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import zmq

from camera.base import FrameSource
from camera.capture import CaptureGroup
from camera.sources import make_source
from inspector.config import CameraConfig, Config, StorageConfig, check_runnable
from inspector.errors import ConfigError
from inspector.inspection.detectors import load_detector
from inspector.inspection.service import InspectionService
from inspector.loop import Registry
from inspector.model import load_model
from inspector.monitor import Metrics, Monitor
from inspector.store import Recorder, RetentionPolicy, Store

logger = logging.getLogger(__name__)



def retention_policy(storage: StorageConfig) -> RetentionPolicy:
    return RetentionPolicy(
        max_bytes=None if storage.max_disk_gb is None else int(storage.max_disk_gb * 1e9),
        max_disk_percent=storage.max_disk_percent,
        keep_days=storage.keep_days,
        pass_sample_rate=storage.pass_sample_rate,
        protect_recent_rejects_hours=storage.protect_recent_rejects_hours,
    )


def run_pipeline(
    config: Config,
    stop_event: threading.Event,
    out: TextIO,
    duration_s: float | None = None,
    interval_s: float = 2.0,
    source_factory: Callable[[CameraConfig], FrameSource] = make_source,
    web_server: Callable[[Config, Store, InspectionService, Monitor, Metrics], Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run until ``stop_event`` (or ``duration_s``, or every source finished); return the totals.

    ``web_server`` builds the UI (``web.server.WebServer``) when ``web.enabled``; it is
    injected because ``inspector`` never imports ``web``.
    """
    problems = check_runnable(config)  # the same checks as check-config, for every caller
    if problems:
        raise ConfigError(problems)
    store = Store(config.storage.root, frame_format=config.storage.frame_format)
    model, why = Registry(store).startup_model(load_model(config.model.path),
                                               str(config.model.path))
    logger.info("starting with model %s (%s…): %s", model.card.name, model.sha256[:12], why)
    detector = load_detector(config, model)
    recorder = Recorder(store, retention_policy(config.storage))
    context = zmq.Context()
    service = InspectionService(config, detector, context, sinks=[recorder.submit])
    group = CaptureGroup(config.cameras, config.bus.frames, stop_event, context,
                         config.bus.send_hwm, source_factory)
    monitor = Monitor(config, store, recorder, service, group)
    metrics = Metrics(monitor)
    service.outputs.append(metrics.publish)
    stuck: list[str] = []
    started = time.monotonic()
    recorder.start()
    service.start()
    monitor.start()
    web = None
    if web_server is not None and config.web.enabled:
        web = web_server(config, store, service, monitor, metrics)
        web.start()
        print(f"web UI: {web.url}", file=out, flush=True)
    try:
        group.start(config.bus.triggers)
        last_report = started
        while not stop_event.wait(0.1) and not group.all_finished():
            now = time.monotonic()
            if duration_s is not None and now - started >= duration_s:
                break
            if now - last_report >= interval_s:
                for camera, counts in monitor.totals().items():
                    print(f"[{now - started:7.1f}s] {_line(camera, counts)}", file=out, flush=True)
                for alarm in monitor.board.active():
                    print(f"[{now - started:7.1f}s] ALARM: {alarm.reason}", file=out,
                          flush=True)
                last_report = now
    finally:
        if web is not None:
            web.close()
        stuck = group.stop()
        service.stop()
        monitor.check()  # the last word on the run: what is still wrong as it stops
        for alarm in monitor.board.active():
            print(f"ALARM: {alarm.reason}", file=out, flush=True)
        monitor.stop()
        # Waits until every queued verdict is written (or counted as failed): closing the
        # store under a busy recorder loses what it still holds.
        if recorder.stop():
            store.close()
        else:  # only with a timeout; the thread finishes its writes before the process ends
            logger.error("recorder still running; results store left open")
        if not stuck:  # term() would wait forever on the socket of a thread stuck in a read
            context.term()
    result = monitor.totals()
    for camera, counts in result.items():
        print(json.dumps({"camera": camera, **counts}), file=out, flush=True)
    return result


def _line(camera: str, c: dict[str, Any]) -> str:
    return (f"{camera:<12} captured {c['captured']}  dropped {c['dropped']}  inspected "
            f"{c['inspected']}  pass {c['passed']}  reject {c['rejected']}  error {c['errors']}"
            f"  stale {c['stale']}  malformed {c['malformed']}")
