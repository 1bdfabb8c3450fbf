"""Logging: the JSON format a log shipper reads, and the text format on the systemd journal."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from inspector.logs import (
    JournalFormatter,
    JsonFormatter,
    RateLimitedLog,
    connected_to_journal,
    setup_logging,
    syslog_priority,
)

ISO_UTC_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """setup_logging replaces the root logger's handlers: put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def _logger(name: str, formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"tests.logs.{name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, out


def test_json_records_have_the_fields_one_line_each() -> None:
    logger, out = _logger("fields", JsonFormatter())
    logger.info("camera %s: %d frames", "cam1", 42)
    logger.warning("second")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert set(first) == {"time", "level", "logger", "message", "thread"}
    assert ISO_UTC_MS.match(first["time"]), first["time"]
    assert first["level"] == "INFO"
    assert first["logger"] == "tests.logs.fields"
    assert first["message"] == "camera cam1: 42 frames"
    assert first["thread"] == "MainThread"
    assert json.loads(lines[1])["level"] == "WARNING"


def test_json_time_is_utc_with_milliseconds() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.created = 1764100000.1239  # 2025-11-25T19:46:40.123 UTC
    document = json.loads(JsonFormatter().format(record))
    assert document["time"] == "2025-11-25T19:46:40.123Z"


def test_json_carries_the_exception_on_the_same_line() -> None:
    logger, out = _logger("exc", JsonFormatter())
    try:
        raise ValueError("bad frame\nsecond line")
    except ValueError:
        logger.exception("worker failed on %s", "cam2")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    document = json.loads(lines[0])
    assert document["message"] == "worker failed on cam2"
    assert document["level"] == "ERROR"
    assert document["exc"].startswith("Traceback (most recent call last):")
    assert "ValueError: bad frame\nsecond line" in document["exc"]


def test_json_is_safe_for_any_message() -> None:
    logger, out = _logger("hostile", JsonFormatter())

    class Odd:
        def __str__(self) -> str:
            return "odd\r\nobject"

    hostile = "line\nbreak\u2028sep\u2029para\x85nel\x00nul\ud800 \"quoted\" ünïcode ✓"
    logger.warning("value %s and %r", hostile, Odd())
    logger.warning("%d items", "not a number")  # arguments that do not fit the format
    logger.info(Odd())  # a message that is not a string
    text = out.getvalue()
    assert text.isascii()
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == 4  # three records, each ending its line
    assert text.splitlines() == lines[:-1]  # no character inside a record breaks a line
    first, second, third = (json.loads(line) for line in lines[:-1])
    assert hostile in first["message"]
    assert "not a number" in second["message"]
    assert third["message"] == "odd\r\nobject"


def test_json_stack_info() -> None:
    logger, out = _logger("stack", JsonFormatter())
    logger.info("where", stack_info=True)
    document = json.loads(out.getvalue())
    assert document["stack"].startswith("Stack (most recent call last):")


@pytest.mark.usefixtures("restore_logging")
def test_setup_logging_json_to_a_file(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "inspector.log"
    setup_logging("DEBUG", log_file, "json")
    logging.getLogger("inspector.test").debug("hello %s", "json")
    for handler in logging.getLogger().handlers:
        handler.flush()
    (document,) = (json.loads(line) for line in log_file.read_text("utf-8").splitlines())
    assert document["message"] == "hello json"
    assert document["level"] == "DEBUG"
    assert document["logger"] == "inspector.test"


@pytest.mark.usefixtures("restore_logging")
def test_setup_logging_text_keeps_the_timestamp_off_the_journal(tmp_path: Path) -> None:
    log_file = tmp_path / "inspector.log"
    setup_logging("INFO", log_file)
    logging.getLogger("inspector.test").info("plain text")
    for handler in logging.getLogger().handlers:
        handler.flush()
    line = log_file.read_text("utf-8").strip()
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO    inspector.test: plain text$",
                    line)


@contextmanager
def journal_stderr(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """stderr is a file that JOURNAL_STREAM names, as under systemd; yields its path. (Set
    inside the test: pytest puts its own stderr back between a fixture and the test.)"""
    stderr_file = folder / "stderr"
    with stderr_file.open("w", encoding="utf-8") as stream:
        status = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{status.st_dev}:{status.st_ino}")
        monkeypatch.setattr(sys, "stderr", stream)
        yield stderr_file
        for handler in logging.getLogger().handlers:
            handler.flush()


@pytest.mark.usefixtures("restore_logging")
def test_setup_logging_on_the_journal_drops_the_timestamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with journal_stderr(tmp_path, monkeypatch) as stderr_file:
        setup_logging("INFO", tmp_path / "file.log")
        logging.getLogger("inspector.test").warning("to the journal")
        logging.getLogger("inspector.test").info("info too")
    assert stderr_file.read_text("utf-8").splitlines() == [
        "<4>WARNING inspector.test: to the journal",
        "<6>INFO    inspector.test: info too",
    ]
    # The file is not the journal: it keeps its timestamps.
    assert re.match(r"^\d{4}-", (tmp_path / "file.log").read_text("utf-8"))


@pytest.mark.usefixtures("restore_logging")
def test_setup_logging_json_on_the_journal_stays_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with journal_stderr(tmp_path, monkeypatch) as stderr_file:
        setup_logging("INFO", None, "json")
        logging.getLogger("inspector.test").error("shipped")
    assert json.loads(stderr_file.read_text("utf-8"))["message"] == "shipped"


def test_journal_detection_compares_device_and_inode(tmp_path: Path) -> None:
    with (tmp_path / "a").open("w") as a, (tmp_path / "b").open("w") as b:
        st = os.fstat(a.fileno())
        match = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert connected_to_journal(a, match)
        assert connected_to_journal(a.fileno(), match)
        assert not connected_to_journal(b, match)  # set for another stream (inherited)
        assert not connected_to_journal(a, {})
        for bad in ("", ":", f"{st.st_dev}", f"{st.st_dev}:", f"x:{st.st_ino}",
                    f"{st.st_dev}:{st.st_ino}:1", f"-{st.st_dev}:{st.st_ino}"):
            assert not connected_to_journal(a, {"JOURNAL_STREAM": bad}), bad
        assert not connected_to_journal(io.StringIO(), match)  # no descriptor at all
    assert not connected_to_journal(a, match)  # closed


def test_journal_formatter_and_priorities() -> None:
    record = logging.LogRecord("inspector.x", logging.ERROR, __file__, 1, "bad %s", ("cam",),
                               None)
    assert JournalFormatter().format(record) == "<3>ERROR   inspector.x: bad cam"
    assert [syslog_priority(level) for level in (5, 10, 20, 30, 40, 50)] == [7, 7, 6, 4, 3, 2]


def test_rate_limited_log_holds_back_repeats(caplog: pytest.LogCaptureFixture) -> None:
    limited = RateLimitedLog(logging.getLogger("tests.logs.rate"), interval_s=60.0)
    with caplog.at_level(logging.WARNING, logger="tests.logs.rate"):
        for _ in range(3):
            limited.warning("cam1", "bad frame from %s", "cam1")
        limited.warning("cam2", "bad frame from %s", "cam2")
    assert [r.getMessage() for r in caplog.records] == ["bad frame from cam1",
                                                        "bad frame from cam2"]
