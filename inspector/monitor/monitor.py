"""The running box watched as a whole: its counters from one source, its conditions turned
into alarms every ``alarms.check_interval_s``, and whether it is ready to inspect.

Conditions, by kind (thresholds in the config's ``[alarms]``):

    camera_down       a free-running camera captured nothing for camera_down_s (a remote
                      one: nothing arrived); any camera whose source fails to open or read
                      (reconnecting), or whose capture thread ended
    error_rate        over error_window_s more than error_rate of a camera's verdicts were
                      errors (at least error_min_count of them)
    recorder_backlog  the recorder stores verdicts without pictures, or could not store some
    disk_low          the store's filesystem is fuller than disk_low_percent
    disk_full         the store stopped writing pictures for want of space
    storage_error     picture or database writes fail otherwise
    capacity          inspection is saturated; frames are dropped at capture
    drift             a camera's typical score moved towards the threshold
    worker_dead       an inspection worker, the recorder or a capture thread ended
    output_down       an output's condition (``add_source``), e.g. the MQTT broker away

The monitor thread is the only one that changes the board; the web and the pipeline read it.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from inspector.config import Config
from inspector.monitor.alarms import Alarm, AlarmBoard, Condition

if TYPE_CHECKING:  # names for the type hints only: the outputs import this package, and
    # loading the model and fitting code for them would slow every process that does
    from camera.capture import CaptureGroup
    from inspector.loop import DriftMonitor
    from inspector.model import Detector
    from inspector.store import Recorder, Store

logger = logging.getLogger(__name__)

SUMMARY_KEYS = ("captured", "published", "dropped", "received", "inspected", "passed",
                "rejected", "errors", "malformed", "stale")
ConditionSource = Callable[[], list[Condition]]


class Inspection(Protocol):
    """What the monitor reads of ``inspector.inspection.InspectionService`` (which imports
    this package, so it is named by its shape here)."""

    detector: Detector
    drift: DriftMonitor

    def accounting(self) -> dict[str, dict[str, int]]: ...
    def capacity_alarm(self) -> str | None: ...
    def dead_workers(self) -> list[str]: ...


@dataclass
class _Camera:
    """What the monitor remembers of one camera between checks (bounded: configured cameras)."""

    captured: int = 0
    changed: float = field(default_factory=time.monotonic)  # when ``captured`` last moved
    # (monotonic time, errors, verdicts) samples over the error window
    samples: deque[tuple[float, int, int]] = field(default_factory=deque)


def _delivered(stats: dict[str, Any], verdicts: dict[str, int]) -> int:
    """Frames a camera delivered: captured here, or, captured on another host, received."""
    return verdicts.get("received", 0) if stats["state"] == "remote" else stats["captured"]


class Monitor:
    """Watches store, recorder, inspection and cameras; ``start()``, ``stop()``."""

    def __init__(self, config: Config, store: Store, recorder: Recorder,
                 service: Inspection, group: CaptureGroup,
                 board: AlarmBoard | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config, self.store, self.recorder = config, store, recorder
        self.service, self.group = service, group
        self.board = board or AlarmBoard()
        self._clock = clock
        self._sources: list[ConditionSource] = []
        self._cameras = {c.id: _Camera(changed=clock()) for c in config.cameras}
        self._triggered = {c.id for c in config.cameras if c.trigger == "software"}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)
        self.board.subscribe(self._log)

    def add_source(self, source: ConditionSource) -> None:
        """Another part's conditions (an output's), judged at every check."""
        self._sources.append(source)

    # -- one source for every counter ----------------------------------------------------

    def totals(self) -> dict[str, dict[str, Any]]:
        """Camera-side and inspection-side counters side by side, per configured camera."""
        # Inspection side first: read after the cameras', received could pass published.
        inspected = self.service.accounting()
        result = {}
        for camera, counts in self.group.stats().items():
            merged = {**counts, **inspected.get(camera, {})}
            result[camera] = {key: merged.get(key, 0) for key in SUMMARY_KEYS}
        return result

    # -- alarms --------------------------------------------------------------------------

    def start(self) -> None:
        self.store.close_open_alarms()
        self._thread.start()

    def stop(self) -> None:
        """End the checks; alarms still raised are cleared in the history (the box stops)."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(5)
        self.board.clear_all()

    def _run(self) -> None:
        interval = self.config.alarms.check_interval_s
        while not self._stop.wait(interval):
            try:
                self.check()
            except Exception:  # the failure boundary: the next check may work
                logger.exception("alarm check failed")

    def check(self) -> list[Alarm]:
        """Judge every condition now; returns the alarms raised or cleared."""
        return self.board.update(self.conditions())

    def conditions(self) -> list[Condition]:
        found = self._camera_conditions() + self._store_conditions()
        service = self.service
        capacity = service.capacity_alarm()
        if capacity:
            found.append(Condition("capacity", capacity))
        dead = self.dead_threads()
        if dead:
            found.append(Condition("worker_dead", f"threads ended: {', '.join(dead)}"))
        found += [Condition("drift", d.message(), d.camera)
                  for d in service.drift.check(service.detector.card)]
        for source in self._sources:
            try:
                found += source()
            except Exception:
                logger.exception("condition source %r failed", source)
        return found

    def _camera_conditions(self) -> list[Condition]:
        now, limits = self._clock(), self.config.alarms
        found = []
        verdicts = self.service.accounting()
        for camera, stats in self.group.stats().items():
            seen = self._cameras.setdefault(camera, _Camera(changed=now))
            counts = verdicts.get(camera, {})
            delivered = _delivered(stats, counts)
            if delivered != seen.captured:
                seen.captured, seen.changed = delivered, now
            quiet = now - seen.changed
            if (stats["state"] == "remote" and camera not in self._triggered
                    and quiet > limits.camera_down_s):
                found.append(Condition("camera_down", f"camera {camera} down: no frame from "
                                       f"its host for {quiet:.0f} s", camera))
            elif stats["state"] == "reconnecting":
                found.append(Condition("camera_down", f"camera {camera} down: its source fails"
                                       f" to open or read ({stats['reconnects']} reconnect "
                                       "attempts)", camera))
            elif stats["state"] == "stopped" and not self.group.stop_event.is_set():
                found.append(Condition("camera_down", f"camera {camera} down: its capture "
                                       "thread ended", camera))
            elif (stats["state"] in ("starting", "running") and camera not in self._triggered
                  and quiet > limits.camera_down_s):
                found.append(Condition("camera_down", f"camera {camera} down: no frame for "
                                       f"{quiet:.0f} s", camera))
            share = self._error_share(seen, now, counts.get("errors", 0),
                                      counts.get("passed", 0) + counts.get("rejected", 0)
                                      + counts.get("errors", 0))
            if share is not None:
                found.append(Condition("error_rate", f"camera {camera}: {share}", camera))
        return found

    def _error_share(self, seen: _Camera, now: float, errors: int, verdicts: int) -> str | None:
        """Why the error share over the window is too high, or None."""
        limits = self.config.alarms
        samples = seen.samples
        samples.append((now, errors, verdicts))
        while len(samples) > 1 and now - samples[1][0] >= limits.error_window_s:
            samples.popleft()  # keep one sample at least a window old
        _, errors0, verdicts0 = samples[0]
        n, e = verdicts - verdicts0, errors - errors0
        if e >= limits.error_min_count and e / n > limits.error_rate:
            return (f"{e} of the last {n} verdicts were errors ({e / n:.0%}, limit "
                    f"{limits.error_rate:.0%})")
        return None

    def _store_conditions(self) -> list[Condition]:
        found = []
        if self.recorder.alarm:
            found.append(Condition("recorder_backlog", self.recorder.alarm))
        alarm = self.store.alarm
        if alarm:
            found.append(Condition("disk_full" if alarm.startswith("disk full") else
                                   "storage_error", alarm))
        used = self.disk_used()
        if used is not None and used * 100 > self.config.alarms.disk_low_percent:
            found.append(Condition("disk_low", f"the store's filesystem is {used:.0%} full "
                                   f"(limit {self.config.alarms.disk_low_percent:g}%)"))
        return found

    def disk_used(self) -> float | None:
        """The share of the store's filesystem in use, or None when it cannot be read."""
        try:
            usage = shutil.disk_usage(self.store.root)
        except OSError:
            return None
        return usage.used / usage.total if usage.total else None

    def dead_threads(self) -> list[str]:
        """The inspection workers, the recorder and this monitor: those that ended while
        the box runs (a capture thread that ended is its camera's ``camera_down``)."""
        if self.group.stop_event.is_set() or self._stop.is_set():
            return []
        dead = list(self.service.dead_workers())
        if not self.recorder.is_alive():
            dead.append(self.recorder.name)
        if self._thread.ident is not None and not self._thread.is_alive():
            dead.append(self._thread.name)
        return dead

    def _log(self, alarm: Alarm) -> None:
        """The alarm history in the store; a store that cannot write loses only this."""
        try:
            self.store.log_alarm(alarm.kind, alarm.subject, alarm.reason, alarm.raised_ns,
                                 alarm.cleared_ns)
        except Exception as exc:
            logger.warning("alarm not stored: %s (%s)", alarm.reason, exc)

    # -- health --------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        """Whether the box inspects as it should, with each check's finding: the model
        loaded, every camera delivered a frame recently, the store writable, no thread
        ended. Read from the last check's alarms (at most check_interval_s old)."""
        active = self.board.active()
        down = {a.subject: a.reason for a in active if a.kind == "camera_down"}
        cameras = {}
        verdicts = self.service.accounting()
        for camera, stats in self.group.stats().items():
            ok = camera not in down and (_delivered(stats, verdicts.get(camera, {})) > 0
                                         or camera in self._triggered)
            cameras[camera] = {"ok": ok, "reason": down.get(
                camera, None if ok else "no frame yet")}
        store_problem = next((a.reason for a in active
                              if a.kind in ("disk_full", "storage_error")), None)
        dead = self.dead_threads()
        checks = {
            "model": {"ok": self.service.detector is not None,
                      "sha256": self.service.detector.model.sha256},
            "cameras": {"ok": all(c["ok"] for c in cameras.values()), "cameras": cameras},
            "store": {"ok": store_problem is None, "reason": store_problem},
            "threads": {"ok": not dead, "ended": dead},
        }
        return all(check["ok"] for check in checks.values()), checks
