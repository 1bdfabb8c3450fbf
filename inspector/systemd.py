"""Talking to systemd as a ``Type=notify`` service, without a dependency (the sd_notify
protocol: one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket in ``NOTIFY_SOCKET``).

``inspector run`` says READY once it inspects, STATUS with its counts, STOPPING while it
drains, and feeds the watchdog (``WatchdogSec=`` in the unit) only while it is healthy, so
systemd restarts a box whose inspection has died even though the process still runs.
Outside systemd every call is a no-op that returns False.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

logger = logging.getLogger(__name__)


def notify(state: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``, newline-separated assignments) to systemd.

    True when the datagram was sent; False when not run by systemd (no ``NOTIFY_SOCKET``),
    for a socket kind this does not speak, and on any socket error (logged at debug level:
    a notification must never stop the service).
    """
    address = environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # Linux's abstract namespace
        address = "\0" + address[1:]
    elif not address.startswith("/"):  # e.g. vsock:CID:PORT (a VM's host); not spoken here
        logger.debug("NOTIFY_SOCKET %r is not a unix socket; not notifying", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode("utf-8"), address)
    except OSError as exc:
        logger.debug("sd_notify %r to %r failed: %s", state, address, exc)
        return False
    return True


def watchdog_interval_s(environ: Mapping[str, str] = os.environ) -> float | None:
    """The watchdog timeout systemd expects WATCHDOG=1 within (``WATCHDOG_USEC``), in
    seconds; None without a watchdog, or when ``WATCHDOG_PID`` names another process."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    if not usec.isdigit() or int(usec) == 0:
        return None
    return int(usec) / 1_000_000


class ServiceNotifier:
    """The service's side of systemd: ``ready()``, ``status(text)``, ``stopping()`` and
    ``tick(healthy)`` for the watchdog. The environment is read once, at construction.

    ``tick`` is meant to be called often (every pass of a loop that wakes every 100 ms);
    it sends WATCHDOG=1 at most once per half the watchdog interval, and only when
    ``healthy``: a process whose inspection has died stops feeding the watchdog, and
    systemd restarts it (``Restart=on-failure`` counts a watchdog timeout as a failure).
    Thread-safe; every method returns whether a datagram was sent.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._environ = dict(os.environ if environ is None else environ)
        self._watchdog_s = watchdog_interval_s(self._environ)
        self._clock = clock
        self._last_tick: float | None = None
        self._unhealthy_logged = False
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether systemd is listening (the service was started with ``NOTIFY_SOCKET``)."""
        return bool(self._environ.get("NOTIFY_SOCKET"))

    @property
    def watchdog_s(self) -> float | None:
        """The watchdog timeout in seconds, or None without one."""
        return self._watchdog_s

    def ready(self, status: str | None = None) -> bool:
        """Start-up is complete (``Type=notify`` waits for this; the watchdog starts now)."""
        return self._send("READY=1", status)

    def stopping(self, status: str | None = None) -> bool:
        """The service is shutting down (draining); systemd's stop timeout applies now."""
        return self._send("STOPPING=1", status)

    def status(self, text: str) -> bool:
        """One line shown by ``systemctl status``."""
        return self._send(None, text)

    def tick(self, healthy: bool) -> bool:
        """Feed the watchdog when ``healthy`` and half its interval has passed since the
        last feed; withhold it otherwise."""
        if self._watchdog_s is None:
            return False
        with self._lock:
            if not healthy:
                if not self._unhealthy_logged:
                    logger.error("unhealthy: not feeding the systemd watchdog; systemd "
                                 "restarts the service within %.0f s", self._watchdog_s)
                    self._unhealthy_logged = True
                return False
            self._unhealthy_logged = False
            now = self._clock()
            if self._last_tick is not None and now - self._last_tick < self._watchdog_s / 2:
                return False
            self._last_tick = now
        return notify("WATCHDOG=1", self._environ)

    def _send(self, state: str | None, status: str | None) -> bool:
        lines = [] if state is None else [state]
        if status is not None:  # one line: a newline would start another assignment
            lines.append("STATUS=" + " ".join(status.splitlines()))
        return notify("\n".join(lines), self._environ)
