"""Background jobs (a refit): one at a time, on a low-priority thread, polled for status.

A job is a function ``job(report, should_stop) -> dict | None``. It calls
``report(stage, fraction)`` as it goes and asks ``should_stop()`` where it can stop; to stop
it raises ``Cancelled`` (a job that returns normally is done, even when a cancel came too
late to matter). ``JobRunner`` runs it on a daemon thread at a lowered priority, so that
fitting beside live inspection does not make verdicts late, and keeps the status of the
running job and of the last finished one, for a web page to poll.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from inspector.errors import InspectorError
from inspector.threads import lower_priority

logger = logging.getLogger(__name__)

# Nice value of job threads (and of the threads they start, e.g. ONNX Runtime's pool, which
# inherit it): inspection, capture and the recorder run at 0 and always come first.
DEFAULT_NICENESS = 15

Report = Callable[..., None]  # report(stage: str, fraction: float | None = None)
ShouldStop = Callable[[], bool]
JobFunction = Callable[[Report, ShouldStop], "Mapping[str, Any] | None"]
State = Literal["running", "done", "failed", "cancelled"]


class JobRunning(InspectorError):
    """A job was started while another one runs; ``job`` is the running one's status."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        fraction = job["fraction"]
        at = "" if fraction is None else f", {fraction:.0%}"
        super().__init__(f"a {job['kind']} job ({job['id']}) is running ({job['stage']}{at}); "
                         "wait for it to end or cancel it first")


class Cancelled(InspectorError):
    """Raised by a job that stopped because it was asked to."""


@dataclass
class _Job:
    id: str
    kind: str
    description: str | None
    started_ns: int
    state: State = "running"
    stage: str = "starting"
    fraction: float | None = 0.0
    finished_ns: int | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def to_json(self) -> dict[str, Any]:
        end = self.finished_ns if self.finished_ns is not None else time.time_ns()
        return {"id": self.id, "kind": self.kind, "description": self.description,
                "state": self.state, "stage": self.stage, "fraction": self.fraction,
                "started_ns": self.started_ns, "finished_ns": self.finished_ns,
                "elapsed_s": round((end - self.started_ns) / 1e9, 3),
                "cancel_requested": self.cancel.is_set(), "error": self.error,
                "result": None if self.result is None else dict(self.result)}


class JobRunner:
    """Runs at most one background job at a time; safe to share between threads.

    Keeps two jobs' statuses at most: the running one and the last one that finished.
    """

    def __init__(self, niceness: int = DEFAULT_NICENESS) -> None:
        self.niceness = niceness
        self._lock = threading.Lock()
        self._current: _Job | None = None
        self._last: _Job | None = None

    def start(self, kind: str, job: JobFunction, description: str | None = None) -> str:
        """Start ``job`` on its own thread; returns its id. Raises ``JobRunning`` while
        another job runs."""
        with self._lock:
            if self._current is not None:
                raise JobRunning(self._current.to_json())
            entry = _Job(id=uuid.uuid4().hex[:12], kind=kind, description=description,
                         started_ns=time.time_ns())
            entry.thread = threading.Thread(target=self._run, args=(entry, job),
                                            name=f"job-{kind}", daemon=True)
            self._current = entry
            try:
                entry.thread.start()
            except BaseException:  # no thread to run it (RuntimeError: can't start new thread)
                self._current = None
                raise
        logger.info("job %s (%s) started%s", entry.id, kind,
                    f": {description}" if description else "")
        return entry.id

    def status(self) -> dict[str, Any] | None:
        """The running job's status, else the last finished job's; None before any job.

        Keys: ``id``, ``kind``, ``description``, ``state`` (running, done, failed,
        cancelled), ``stage``, ``fraction`` (0..1, or None when the job cannot tell),
        ``started_ns``, ``finished_ns`` (None while running), ``elapsed_s``,
        ``cancel_requested``, ``error`` (the message of a failed job) and ``result`` (what
        a done job returned).
        """
        with self._lock:
            job = self._current or self._last
            return None if job is None else job.to_json()

    def last(self) -> dict[str, Any] | None:
        """The status of the last job that finished, also while another one runs."""
        with self._lock:
            return None if self._last is None else self._last.to_json()

    @property
    def running(self) -> bool:
        with self._lock:
            return self._current is not None

    def cancel(self) -> bool:
        """Ask the running job to stop (it does at its next ``should_stop()``); False when no
        job runs."""
        with self._lock:
            job = self._current
            if job is None:
                return False
            job.cancel.set()
        logger.info("job %s (%s): cancel requested", job.id, job.kind)
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the running job to end; True when none runs any more."""
        with self._lock:
            thread = None if self._current is None else self._current.thread
        if thread is not None:
            thread.join(timeout)
        return not self.running

    def _run(self, entry: _Job, job: JobFunction) -> None:
        # Linux schedules threads on their own: this lowers this thread only, and the threads
        # the job starts inherit it. Capture and inspection keep their priority.
        if self.niceness and not lower_priority(self.niceness):
            logger.warning("job %s (%s) runs at normal priority: cannot lower it to nice %d",
                           entry.id, entry.kind, self.niceness)

        def report(stage: str, fraction: float | None = None) -> None:
            value = None if fraction is None or math.isnan(fraction) else float(fraction)
            with self._lock:
                entry.stage = str(stage)
                entry.fraction = None if value is None else min(1.0, max(0.0, value))

        state: State = "failed"
        error: str | None = "interrupted"  # replaced unless a BaseException ends it
        result: dict[str, Any] | None = None
        try:
            returned = job(report, entry.cancel.is_set)
            if returned is not None:
                result = (dict(returned) if isinstance(returned, Mapping)
                          else {"value": returned})
            state, error = "done", None
        except Cancelled as exc:
            state, error = "cancelled", str(exc) or "cancelled"
        except InspectorError as exc:  # a refusal the job meant (too few samples...)
            error = str(exc)
            logger.warning("job %s (%s) failed: %s", entry.id, entry.kind, error)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            logger.exception("job %s (%s) failed", entry.id, entry.kind)
        finally:
            with self._lock:
                entry.state, entry.error = state, error
                entry.result = result
                if state == "done":
                    entry.fraction = 1.0
                entry.finished_ns = time.time_ns()
                entry.thread = None
                self._last, self._current = entry, None
        logger.info("job %s (%s) %s after %.1f s", entry.id, entry.kind, state,
                    (entry.finished_ns - entry.started_ns) / 1e9)
