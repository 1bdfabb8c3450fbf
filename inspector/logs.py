"""Logging set-up for the command line, and a rate limit for per-frame warnings.

Two formats (``logging.format`` in the config): ``text``, one human-readable line per
record, and ``json``, one JSON object per line for log shippers. Under systemd, when
stderr is the journal's stream, text lines leave out the timestamp (the journal stamps
each line) and start with a ``<N>`` syslog priority, so ``journalctl -p warning`` works.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_JOURNAL_FORMAT = "%(levelname)-7s %(name)s: %(message)s"  # journald adds the time

# Python levels to syslog priorities, which journald reads from a "<N>" line prefix.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
               (logging.INFO, 6))
_DEBUG_PRIORITY = 7


def setup_logging(
    level: str = "INFO", file: Path | None = None, format: Literal["text", "json"] = "text"
) -> None:
    """Log to stderr, and to ``file`` as well when given, in ``format`` ("text" or "json")."""
    stderr = logging.StreamHandler()
    handlers: list[logging.Handler] = [stderr]
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(JsonFormatter() if format == "json" else logging.Formatter(_FORMAT))
    if format != "json" and connected_to_journal(stderr.stream):
        stderr.setFormatter(JournalFormatter())
    logging.basicConfig(level=level, handlers=handlers, force=True)
    # pymodbus logs every malformed request from any client at ERROR: whoever reaches the
    # PLC port could flood the log. The gate counts them (its stats, /metrics) instead.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def connected_to_journal(
    stream: IO[str] | int | None = None, environ: Mapping[str, str] | None = None
) -> bool:
    """Whether ``stream`` (a file object or descriptor; stderr by default) is the systemd
    journal's stream: systemd sets ``JOURNAL_STREAM=DEVICE:INODE`` (decimal) for a service
    whose output goes to the journal, and the variable counts only when it names the very
    file that stream is, since a child process inherits it with other output."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        fd = stream if isinstance(stream, int) else (stream or sys.stderr).fileno()
        status = os.fstat(fd)
    except (AttributeError, OSError, ValueError):  # no descriptor (e.g. captured by pytest)
        return False
    return (status.st_dev, status.st_ino) == (int(device), int(inode))


class JournalFormatter(logging.Formatter):
    """Text without a timestamp, prefixed by the syslog priority journald reads (``<3>``).
    A traceback's further lines reach the journal as lines of their own."""

    def __init__(self) -> None:
        super().__init__(_JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return f"<{syslog_priority(record.levelno)}>{super().format(record)}"


def syslog_priority(levelno: int) -> int:
    """The syslog priority (0 emergency ... 7 debug) of a Python logging level."""
    return next((prio for level, prio in _PRIORITIES if levelno >= level), _DEBUG_PRIORITY)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``time`` (ISO-8601 UTC, milliseconds),
    ``level``, ``logger``, ``message`` (formatted), ``thread``, and ``exc`` (the traceback)
    and ``stack`` when the record has them. Non-ASCII is escaped, so no character of a
    record can read as a line break to any reader."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, str] = {
            "time": _utc_iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
            "thread": str(record.threadName),
        }
        if record.exc_info and not record.exc_text:  # cached, as logging.Formatter does
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exc"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, ensure_ascii=True, default=str)


def _utc_iso(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _message(record: logging.LogRecord) -> str:
    """The formatted message; a call whose arguments do not fit its format still logs."""
    try:
        return record.getMessage()
    except Exception:  # a bad log call must not lose the record
        return f"{record.msg!s} (unformattable arguments: {record.args!r})"


class RateLimitedLog:
    """Logs a warning at most once per ``interval_s`` per key, saying how many were held back.

    A stream of bad frames must not flood the log or slow the loop that drops them.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def warning(self, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -self._interval_s) < self._interval_s:
                self._held[key] = self._held.get(key, 0) + 1
                return
            self._last[key] = now
            held = self._held.pop(key, 0)
        if held:
            msg += " (%d similar messages held back)"
            args = (*args, held)
        self._logger.warning(msg, *args)
