"""Alarms, one mechanism: every part of the box states its conditions, the board turns them
into raised and cleared alarms with a reason and timestamps, and tells its listeners.

An alarm is identified by ``kind`` and ``subject`` (a camera id, or "" for the whole box).
A condition that is still present keeps its alarm (its reason may change); one that is
gone clears it. Listeners (the store, MQTT, the PLC's alarm bits) hear each raise and
clear once; a listener that fails is logged and the others still hear it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

logger = logging.getLogger(__name__)

# Every kind of alarm, in a fixed order: the PLC's alarm bits are numbered by it
# (docs/integration.md), so new kinds go at the end.
ALARM_KINDS = (
    "camera_down",  # a camera delivers no frames
    "error_rate",  # too many error verdicts (late, stale, model failures)
    "recorder_backlog",  # verdicts wait to be written, or were not
    "disk_low",  # the store's filesystem is nearly full
    "disk_full",  # image writes stopped; verdicts are stored without images
    "capacity",  # inspection cannot keep up; frames are dropped at capture
    "drift",  # a camera's scores drifted from those the model was fitted on
    "worker_dead",  # a thread of the box ended
    "output_down",  # an output (MQTT broker) cannot be reached
    "storage_error",  # image or database writes fail for another reason than a full disk
)


@dataclass(frozen=True)
class Condition:
    """Something wrong now, as a part of the box states it. ``reason`` is read on its own
    (panel, MQTT, log), so it names the camera or output it is about."""

    kind: str
    reason: str
    subject: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ALARM_KINDS:
            raise ValueError(f"unknown alarm kind {self.kind!r}")

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.subject


@dataclass(frozen=True)
class Alarm:
    """A raised (``cleared_ns`` None) or cleared alarm."""

    kind: str
    subject: str
    reason: str
    raised_ns: int
    cleared_ns: int | None = None

    @property
    def active(self) -> bool:
        return self.cleared_ns is None

    def document(self) -> dict[str, Any]:
        """As published on MQTT and served by the API."""
        return {"kind": self.kind, "subject": self.subject, "reason": self.reason,
                "active": self.active, "raised_ns": self.raised_ns,
                "cleared_ns": self.cleared_ns}


AlarmListener = Callable[[Alarm], None]


class AlarmBoard:
    """The box's alarms; thread-safe. ``update`` with every condition present now."""

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self._clock = clock
        self._active: dict[tuple[str, str], Alarm] = {}
        self._listeners: list[AlarmListener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: AlarmListener) -> None:
        """``listener`` hears every raise and clear from now on (on the updating thread)."""
        with self._lock:
            self._listeners.append(listener)

    def update(self, conditions: Iterable[Condition]) -> list[Alarm]:
        """Raise the alarms of new conditions, clear those of conditions gone; returns the
        changes (raised and cleared alarms), which the listeners have heard."""
        now = self._clock()
        current = {c.key: c for c in conditions}
        changes = []
        with self._lock:
            for key, condition in current.items():
                alarm = self._active.get(key)
                if alarm is None:
                    alarm = Alarm(condition.kind, condition.subject, condition.reason, now)
                    changes.append(alarm)
                    self._active[key] = alarm
                elif alarm.reason != condition.reason:  # same alarm, newer reason: no event
                    self._active[key] = replace(alarm, reason=condition.reason)
            for key in [key for key in self._active if key not in current]:
                changes.append(replace(self._active.pop(key), cleared_ns=now))
            listeners = list(self._listeners)
        for alarm in changes:
            (logger.warning if alarm.active else logger.info)(
                "alarm %s: %s", "raised" if alarm.active else "cleared", alarm.reason)
            for listener in listeners:
                try:
                    listener(alarm)
                except Exception:  # one broken listener must not keep the others deaf
                    logger.exception("alarm listener %r failed", listener)
        return changes

    def active(self) -> list[Alarm]:
        """The alarms raised now, oldest first."""
        with self._lock:
            return sorted(self._active.values(), key=lambda a: (a.raised_ns, a.kind, a.subject))

    def clear_all(self) -> list[Alarm]:
        """Clear every alarm (the box is stopping); returns them as cleared."""
        return self.update(())
