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
from inspector.errors import ConfigError, OutputError
from inspector.inspection.detectors import load_detector
from inspector.inspection.service import InspectionService
from inspector.loop import Registry
from inspector.model import load_model
from inspector.monitor import Metrics, Monitor
from inspector.outputs import ModbusGate, MqttOutput
from inspector.store import Recorder, RetentionPolicy, Store
from inspector.systemd import ServiceNotifier

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
    storage = config.storage
    store = Store(storage.root, min_free_bytes=int(storage.min_free_mb * 2**20),
                  reserve_bytes=int(storage.reserve_mb * 2**20),
                  frame_format=storage.frame_format)
    model, why = Registry(store).startup_model(load_model(config.model.path),
                                               str(config.model.path))
    logger.info("starting with model %s (%s…): %s", model.card.name, model.sha256[:12], why)
    detector = load_detector(config, model)
    recorder = Recorder(store, retention_policy(storage), max_pending=storage.recorder_queue,
                        max_pending_images=storage.recorder_image_queue)
    context = zmq.Context()
    service = InspectionService(config, detector, context, sinks=[recorder.submit])
    group = CaptureGroup(config.cameras, config.bus.frames, stop_event, context,
                         config.bus.send_hwm, source_factory)
    monitor = Monitor(config, store, recorder, service, group)
    line = _line_outputs(config, group, monitor)
    metrics = Metrics(monitor, {name: output.stats for name, output in line})
    service.outputs.append(metrics.publish)
    try:
        _start_outputs(line)
    except BaseException:
        service.stop(drain_quiet_ms=0)  # its sockets are open: term() would wait on them
        store.close()
        context.term()
        raise
    for _, output in line:
        service.outputs.append(output.publish)
        monitor.board.subscribe(output.on_alarm)
    notifier = ServiceNotifier()
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
        notifier.ready(f"inspecting {len(config.cameras)} camera(s) with model "
                       f"{model.card.name}")
        last_report = started
        while not stop_event.wait(0.1) and not group.all_finished():
            # systemd restarts a box whose inspection died though the process lives on; a
            # camera that is down is an alarm, not a reason to restart.
            notifier.tick(healthy=not monitor.dead_threads())
            now = time.monotonic()
            if duration_s is not None and now - started >= duration_s:
                break
            if now - last_report >= interval_s:
                counts = monitor.totals()
                for camera, camera_counts in counts.items():
                    print(f"[{now - started:7.1f}s] {_line(camera, camera_counts)}", file=out,
                          flush=True)
                for alarm in monitor.board.active():
                    print(f"[{now - started:7.1f}s] ALARM: {alarm.reason}", file=out,
                          flush=True)
                notifier.status("; ".join(f"{camera}: {c['inspected']} inspected, "
                                          f"{c['rejected']} rejected"
                                          for camera, c in counts.items()))
                last_report = now
    finally:
        notifier.stopping("draining: writing the verdicts still queued")
        if web is not None:
            web.close()
        stuck = group.stop()
        service.stop()
        monitor.check()  # the last word on the run: what is still wrong as it stops
        for alarm in monitor.board.active():
            print(f"ALARM: {alarm.reason}", file=out, flush=True)
        monitor.stop()  # clears the alarms: the outputs still tell the plant
        for _, output in reversed(line):
            output.close()
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


def _line_outputs(config: Config, group: CaptureGroup, monitor: Monitor
                  ) -> list[tuple[str, Any]]:
    """The PLC gate and the MQTT output the config asks for, by name, wired to the monitor:
    the gate's ready bit is ``/readyz``, its trigger register a software trigger."""
    line: list[tuple[str, Any]] = []
    if config.outputs.modbus is not None:
        line.append(("modbus", ModbusGate(config.outputs.modbus,
                                          [camera.id for camera in config.cameras],
                                          trigger=group.trigger,
                                          ready=lambda: monitor.readiness()[0])))
    if config.outputs.mqtt is not None:
        mqtt = MqttOutput(config.outputs.mqtt, config.outputs.box_id, counters=monitor.totals)
        monitor.add_source(mqtt.conditions)
        line.append(("mqtt", mqtt))
    return line


def _start_outputs(line: list[tuple[str, Any]]) -> None:
    """Start each output; should one fail, close those started and say which failed."""
    for index, (name, output) in enumerate(line):
        try:
            output.start()
        except Exception as exc:
            for _, started in reversed(line[:index]):
                started.close()
            if isinstance(exc, OSError):  # a port taken: a restart may find it free
                raise OutputError(f"outputs.{name}: {exc}") from exc
            raise


def _line(camera: str, c: dict[str, Any]) -> str:
    return (f"{camera:<12} captured {c['captured']}  dropped {c['dropped']}  inspected "
            f"{c['inspected']}  pass {c['passed']}  reject {c['rejected']}  error {c['errors']}"
            f"  stale {c['stale']}  malformed {c['malformed']}")
