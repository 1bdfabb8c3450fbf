"""Guards of the sign-in: per-name lockout, a bound on password checks, cheap refusals,
safe redirects.

The per-address rate limit is Flask-Limiter's (set up in ``web.create_app``). What it
cannot do lives here: locking a user name after repeated wrong passwords, keeping
password hashing (scrypt: ~150-250 ms of one core and 32 MiB each) from eating the
CPU that inspection runs on, however many clients push at once, and answering an address
the limit already refused without running the app again.
"""

from __future__ import annotations

import functools
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from werkzeug.security import generate_password_hash

# POSTs to /login per client address (moving window). Someone mistyping with gloves needs
# a few tries a minute; a guesser needs thousands.
LOGIN_RATE_PER_ADDRESS = "10 per minute;100 per hour"
# Wrong passwords in a row (each within LOCKOUT_S of the last) that lock a user name for
# LOCKOUT_S. Generated passwords have 72 bits; 10 guesses per 15 minutes is no attack.
LOCKOUT_FAILURES = 10
LOCKOUT_S = 15 * 60.0
# User names tracked at once, known or not (an unknown name must lock the same way, or the
# lockout would tell which names exist). An entry is a name of at most 64 characters and
# three numbers, under 300 bytes, so the table stays under 3 MB; when full, the least
# recently failed name is forgotten first.
LOCKOUT_MAX_NAMES = 10_000
# Password checks running at once, and waiting for a turn; beyond that a sign-in is refused
# (429) rather than queued, so a flood costs at most one core and holds at most three of
# the server's threads.
HASH_CONCURRENCY = 1
HASH_WAITING = 2
HASH_WAIT_S = 2.0  # longest a check waits for its turn before it is refused
BUSY_RETRY_S = 1
LOGIN_MAX_BYTES = 4096  # the sign-in form is a name, a password and a token: under 1 KiB
# Client addresses whose refusal is remembered by ``RefusedAddresses``: real TCP peers (a
# handshake is needed), an address and a number each, so at most about 1 MB; when full,
# the entry refused earliest is forgotten (that address then meets the limit again).
REFUSED_MAX_ADDRESSES = 10_000
REFUSED_UNTIL_KEY = "inspector.address_refused_until"  # WSGI environ key the app sets
# A remembered refusal is answered after this long, by at most REFUSED_HOLDS server threads
# at once (see ``RefusedAddresses``).
REFUSED_HOLD_S = 1.0
REFUSED_HOLDS = 16


class Busy(Exception):
    """Too many password checks at once; the caller answers 429."""


class Lockout:
    """Consecutive wrong passwords per user name, in a table of at most ``max_names``."""

    def __init__(self, failures: int = LOCKOUT_FAILURES, period_s: float = LOCKOUT_S,
                 max_names: int = LOCKOUT_MAX_NAMES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures, self.period_s, self.max_names = failures, period_s, max_names
        self.clock = clock
        self._lock = threading.Lock()
        # name -> [wrong passwords in a row, time of the last one, locked until]
        self._names: OrderedDict[str, list[float]] = OrderedDict()

    def retry_after(self, name: str) -> float:
        """Seconds until ``name`` may try again; 0 when it may now."""
        with self._lock:
            entry = self._names.get(name)
            return max(0.0, entry[2] - self.clock()) if entry else 0.0

    def failed(self, name: str) -> float:
        """Count a wrong password; returns the lock's length when this one locked the name."""
        with self._lock:
            now = self.clock()
            entry = self._names.pop(name, None)
            if entry is None or now - entry[1] > self.period_s:
                entry = [0, now, 0.0]  # an old streak has lapsed
            entry[0] += 1
            entry[1] = now
            locked = 0.0
            if entry[0] >= self.failures:
                entry[0], entry[2], locked = 0, now + self.period_s, self.period_s
            self._names[name] = entry
            while len(self._names) > self.max_names:
                self._names.popitem(last=False)
            return locked

    def clear(self, name: str) -> None:
        """Forget ``name``'s failures (a right password, or an admin reset it)."""
        with self._lock:
            self._names.pop(name, None)

    def __len__(self) -> int:
        return len(self._names)


class HashGate:
    """At most ``concurrency`` password checks at once and ``waiting`` queued; others Busy."""

    def __init__(self, concurrency: int = HASH_CONCURRENCY, waiting: int = HASH_WAITING,
                 wait_s: float = HASH_WAIT_S) -> None:
        self._turns = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._admitted = 0
        self._limit = concurrency + waiting
        self._wait_s = wait_s

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold one turn for a password check; raises ``Busy`` instead of queueing long."""
        with self._lock:
            if self._admitted >= self._limit:
                raise Busy
            self._admitted += 1
        try:
            if not self._turns.acquire(timeout=self._wait_s):
                raise Busy
            try:
                yield
            finally:
                self._turns.release()
        finally:
            with self._lock:
                self._admitted -= 1


class RefusedAddresses:
    """WSGI middleware: once the per-address limit has refused an address's sign-in, that
    address's next sign-ins are refused here, until the limit's own reset time, without
    entering Flask.

    A flood's refused posts would otherwise each run the app (session, hooks, limiter, an
    error page): Python work that shares the interpreter lock with capture and inspection.
    The limit stays the only judge: the app marks its own refusals in the request's environ
    (``REFUSED_UNTIL_KEY``, a monotonic deadline), and only those are remembered. The
    per-name lockout and the busy gate are not, since they do not concern the address.

    Each such refusal is held for ``hold_s`` before it is answered. A guessing client waits
    for one answer before it sends its next guess, so a held one guesses once a second
    instead of hundreds of times, and the server stops parsing its requests in the process
    that inspects (refused cheaply or not, each costs waitress's Python work under the
    interpreter lock). A hold sleeps in a server thread, without the lock; at most
    ``holds`` run at once, so the UI's own threads keep answering, and refusals beyond
    that are answered at once: a flood from more connections than ``holds`` still costs
    the process its parsing.
    """

    def __init__(self, app: Any, path: str = "/login",
                 max_addresses: int = REFUSED_MAX_ADDRESSES,
                 hold_s: float = REFUSED_HOLD_S, holds: int = REFUSED_HOLDS,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.app, self.path, self.max_addresses, self.clock = app, path, max_addresses, clock
        self.hold_s, self.sleep = hold_s, sleep
        self._holds = threading.BoundedSemaphore(holds)
        self._lock = threading.Lock()
        self._until: OrderedDict[str, float] = OrderedDict()
        self.refused = 0  # sign-ins answered here
        self.held = 0  # of them, answered after a hold

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != self.path:
            return self.app(environ, start_response)
        address = environ.get("REMOTE_ADDR") or ""
        now = self.clock()
        with self._lock:
            until = self._until.get(address, 0.0)
            if until <= now:
                self._until.pop(address, None)
            else:
                self.refused += 1
        if until > now:
            if self.hold_s > 0 and self._holds.acquire(blocking=False):
                try:
                    self.sleep(self.hold_s)
                finally:
                    self._holds.release()
                with self._lock:
                    self.held += 1
            return self._refuse(start_response, max(1, math.ceil(until - self.clock())))
        environ[REFUSED_UNTIL_KEY] = None
        result = self.app(environ, start_response)
        refused_until = environ.get(REFUSED_UNTIL_KEY)
        if refused_until is not None:
            with self._lock:
                self._until.pop(address, None)
                self._until[address] = refused_until
                while len(self._until) > self.max_addresses:
                    self._until.popitem(last=False)
        return result

    @staticmethod
    def _refuse(start_response: Callable, wait_s: int) -> list[bytes]:
        body = (f"<!doctype html><meta charset=utf-8><title>429 Too Many Requests</title>"
                f"<h1>Too many sign-in attempts</h1><p>Too many sign-in attempts from this "
                f"address; wait {wait_s} s, then <a href=\"/login\">sign in</a>.</p>").encode()
        start_response("429 Too Many Requests", [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Retry-After", str(wait_s)),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            ("Content-Security-Policy", "default-src 'none'"),
        ])
        return [body]

    def __len__(self) -> int:
        return len(self._until)


@functools.cache
def dummy_hash() -> str:
    """A hash of a random password, made like real ones: an unknown user name is checked
    against it, so it costs the same time as a known one and timing tells nothing."""
    return generate_password_hash(secrets.token_urlsafe(16))


def safe_next(target: str | None) -> str | None:
    """``target`` when it is a path on this site, else None.

    Judged as a browser reads it: browsers drop tabs and line breaks anywhere in a URL and
    read ``\\`` as ``/``, so ``/\\t/evil.example`` or ``/\\evil.example`` mean
    ``//evil.example``, another site.
    """
    if not target:
        return None
    cleaned = target.strip("".join(map(chr, range(0x21)))).translate(
        {ord("\t"): None, ord("\n"): None, ord("\r"): None})
    if (not cleaned.startswith("/") or cleaned.startswith("//") or "\\" in cleaned
            or any(not ch.isprintable() for ch in cleaned)):
        return None
    parts = urlsplit(cleaned)
    if parts.scheme or parts.netloc:
        return None
    return cleaned
