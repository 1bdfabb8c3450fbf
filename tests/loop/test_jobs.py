"""Background jobs: one at a time, on a lowered-priority daemon thread, their status polled."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from inspector.errors import InspectorError
from inspector.loop.jobs import Cancelled, JobRunner, JobRunning

WAIT = 10.0  # seconds any wait in these tests may take before it is a failure


def held(release: threading.Event, started: threading.Event | None = None,
         result: dict | None = None) -> Callable[..., Any]:
    """A job that reports, then waits for ``release`` (never past WAIT)."""

    def job(report: Callable[..., None], should_stop: Callable[[], bool]) -> dict | None:
        report("waiting", 0.25)
        if started is not None:
            started.set()
        assert release.wait(WAIT), "the test never released the job"
        return result

    return job


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def test_no_status_before_any_job() -> None:
    runner = JobRunner()
    assert runner.status() is None and runner.last() is None
    assert not runner.running
    assert runner.cancel() is False
    assert runner.wait(0.01) is True


def test_one_job_at_a_time_and_the_refusal_names_the_running_one() -> None:
    runner = JobRunner()
    release, started = threading.Event(), threading.Event()
    first = runner.start("refit", held(release, started, {"sha256": "ab"}))
    assert started.wait(WAIT)
    with pytest.raises(JobRunning) as refused:
        runner.start("refit", held(threading.Event()))
    assert isinstance(refused.value, InspectorError)
    assert f"a refit job ({first}) is running (waiting, 25%)" in str(refused.value)
    assert refused.value.job["id"] == first
    assert runner.running

    release.set()
    assert runner.wait(WAIT)
    status = runner.status()
    assert status is not None
    assert (status["id"], status["state"], status["result"]) == (first, "done", {"sha256": "ab"})
    again = threading.Event()
    second = runner.start("export", held(again))  # free again
    assert second != first
    again.set()
    assert runner.wait(WAIT)
    assert runner.last()["id"] == second  # type: ignore[index]


def test_status_while_running_and_after() -> None:
    runner = JobRunner()
    step, go_on = threading.Event(), threading.Event()
    reported: list[str] = []

    def job(report: Callable[..., None], should_stop: Callable[[], bool]) -> dict:
        report("reading samples", 0.1)
        step.set()
        assert go_on.wait(WAIT)
        report("out of range high", 7)
        reported.append("high")
        report("unknown share")  # no fraction: the page shows a spinner
        reported.append("none")
        report("fitting", float("nan"))
        return {"answer": 42}

    before = time.time_ns()
    job_id = runner.start("refit", job, description="refit of line-a")
    assert step.wait(WAIT)
    status = runner.status()
    assert status is not None
    assert status == {**status, "id": job_id, "kind": "refit", "description": "refit of line-a",
                      "state": "running", "stage": "reading samples", "fraction": 0.1,
                      "finished_ns": None, "cancel_requested": False, "error": None,
                      "result": None}
    assert before <= status["started_ns"] <= time.time_ns()
    assert status["elapsed_s"] >= 0
    go_on.set()
    assert runner.wait(WAIT)
    done = runner.status()
    assert done is not None
    assert reported == ["high", "none"]
    assert (done["state"], done["stage"], done["fraction"]) == ("done", "fitting", 1.0)
    assert done["started_ns"] <= done["finished_ns"] <= time.time_ns()
    assert done["result"] == {"answer": 42}
    done["result"]["answer"] = 0  # a copy: the caller cannot change the kept status
    assert runner.status()["result"] == {"answer": 42}  # type: ignore[index]


def test_fractions_are_clamped() -> None:
    runner = JobRunner()
    seen: list[float | None] = []
    release = threading.Event()
    step = threading.Event()

    def job(report: Callable[..., None], should_stop: Callable[[], bool]) -> None:
        for fraction in (-1.0, 7, None):
            report("stage", fraction)
            seen.append(runner.status()["fraction"])  # type: ignore[index]
        step.set()
        assert release.wait(WAIT)

    runner.start("x", job)
    assert step.wait(WAIT)
    release.set()
    assert runner.wait(WAIT)
    assert seen == [0.0, 1.0, None]


def test_a_failing_job_is_reported_and_the_runner_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    runner = JobRunner()

    def boom(report: Callable[..., None], should_stop: Callable[[], bool]) -> None:
        report("fitting", 0.5)
        raise RuntimeError("out of memory, say")

    with caplog.at_level(logging.ERROR, logger="inspector.loop.jobs"):
        first = runner.start("refit", boom)
        assert runner.wait(WAIT)
    status = runner.status()
    assert status is not None
    assert (status["id"], status["state"], status["stage"], status["fraction"]) == (
        first, "failed", "fitting", 0.5)
    assert status["error"] == "RuntimeError: out of memory, say"
    assert status["finished_ns"] is not None and status["result"] is None
    assert any(r.exc_info for r in caplog.records)  # the traceback is logged

    def refused(report: Callable[..., None], should_stop: Callable[[], bool]) -> None:
        raise InspectorError("a refit needs at least 10 labeled good frames, found 3")

    runner.start("refit", refused)
    assert runner.wait(WAIT)
    assert runner.status()["error"] == (  # type: ignore[index]
        "a refit needs at least 10 labeled good frames, found 3")
    release = threading.Event()
    runner.start("refit", held(release, result={"ok": True}))
    release.set()
    assert runner.wait(WAIT)
    assert runner.status()["state"] == "done"  # type: ignore[index]


def test_cancel_is_cooperative() -> None:
    runner = JobRunner()
    started = threading.Event()
    checks: list[bool] = []

    def job(report: Callable[..., None], should_stop: Callable[[], bool]) -> None:
        started.set()
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            checks.append(should_stop())
            if checks[-1]:
                raise Cancelled("stopped before the fit")
            time.sleep(0.005)
        raise AssertionError("never asked to stop")

    runner.start("refit", job)
    assert started.wait(WAIT)
    assert runner.status()["cancel_requested"] is False  # type: ignore[index]
    assert runner.cancel() is True
    assert runner.wait(WAIT)
    status = runner.status()
    assert status is not None
    assert (status["state"], status["error"], status["cancel_requested"]) == (
        "cancelled", "stopped before the fit", True)
    assert checks[-1] is True and not any(checks[:-1])
    assert runner.cancel() is False  # nothing runs any more


def test_a_job_that_ends_despite_a_cancel_is_done() -> None:
    runner = JobRunner()
    release, started = threading.Event(), threading.Event()
    runner.start("refit", held(release, started, {"sha256": "cd"}))  # never asks should_stop
    assert started.wait(WAIT)
    runner.cancel()
    release.set()
    assert runner.wait(WAIT)
    status = runner.status()
    assert status is not None
    assert (status["state"], status["cancel_requested"], status["result"]) == (
        "done", True, {"sha256": "cd"})


def test_only_the_running_and_the_last_job_are_kept() -> None:
    runner = JobRunner()
    ids = []
    for n in range(2):
        release = threading.Event()
        ids.append(runner.start("job", held(release, result={"n": n})))
        release.set()
        assert runner.wait(WAIT)
    release, started = threading.Event(), threading.Event()
    ids.append(runner.start("job", held(release, started)))
    assert started.wait(WAIT)
    assert runner.status()["id"] == ids[2]  # type: ignore[index]
    assert runner.last() == {**runner.last(), "id": ids[1], "result": {"n": 1}}  # type: ignore[dict-item]
    release.set()
    assert runner.wait(WAIT)
    assert runner.last()["id"] == runner.status()["id"] == ids[2]  # type: ignore[index]
    assert len({id(job) for job in (runner._current, runner._last) if job}) == 1


def test_the_job_runs_on_a_daemon_thread_at_a_lower_priority() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("per-thread priorities are Linux's")
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    if own > 12:
        pytest.skip(f"this test already runs at nice {own}")
    runner = JobRunner(niceness=12)
    seen: dict[str, Any] = {}

    def job(report: Callable[..., None], should_stop: Callable[[], bool]) -> None:
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        seen["daemon"] = threading.current_thread().daemon
        seen["thread"] = threading.get_native_id()
        # What the job starts (ONNX Runtime's thread pool) inherits the lowered priority.
        child = threading.Thread(target=lambda: seen.setdefault(
            "child", os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        child.start()
        child.join(WAIT)

    runner.start("refit", job)
    assert runner.wait(WAIT)
    assert runner.status()["state"] == "done"  # type: ignore[index]
    assert seen["nice"] == seen["child"] == 12
    assert seen["daemon"] is True
    assert seen["thread"] != threading.get_native_id()
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own  # caller unchanged


def test_a_job_returning_something_else_than_a_dict() -> None:
    runner = JobRunner(niceness=0)
    runner.start("count", lambda report, should_stop: 3)
    assert runner.wait(WAIT)
    assert runner.status()["result"] == {"value": 3}  # type: ignore[index]
