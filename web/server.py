"""Serving the UI with waitress (a production WSGI server), in a thread of ``inspector run``."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from waitress.server import create_server

from inspector.config import Config
from inspector.files import write_atomic
from inspector.local_api import WEB_URL_FILE
from inspector.store import Store
from inspector.threads import lower_priority
from web import MAX_REQUEST_BYTES, create_app
from web.auth import ROLES, add_user
from web.live import MAX_STREAMS
from web.security import HASH_CONCURRENCY, HASH_WAITING, REFUSED_HOLDS

logger = logging.getLogger(__name__)

# Worker threads: the live streams, the sign-ins waiting for a password check and the held
# refusals of a sign-in flood may each hold one for long; five more keep pages and the
# panel's polling answering meanwhile.
THREADS = MAX_STREAMS + HASH_CONCURRENCY + HASH_WAITING + REFUSED_HOLDS + 5
# Open connections. A box serves a few panels and desks, each browser up to 6 connections;
# 200 file descriptors sit well inside the default limit of 1024 that the store, ZeroMQ
# and cameras share. Idle ones are closed quickly (below), so filling this takes
# an attacker keeping every one of them busy, not just opening them.
CONNECTION_LIMIT = 200
# A keep-alive connection with no request for this long is closed. The panel polls every
# 2 s, so its connection never idles this long; a browser reopens one unnoticed.
CHANNEL_TIMEOUT_S = 15
CLEANUP_INTERVAL_S = 5  # how often idle connections are looked for
# Request line and headers: a filtered URL and the session cookie take a few KiB.
MAX_HEADER_BYTES = 32 * 1024
# Output queued per connection before the worker waits for the client to read: a viewer
# that stops reading stalls its own stream there instead of growing memory.
OUTBUF_HIGH_WATERMARK = 4 * 2**20


# Web threads run at a lower CPU priority than inspection (Linux schedules threads on their
# own): a flood of requests, even refused ones, then takes the cores inspection leaves idle
# instead of delaying verdicts. The UI can wait a few milliseconds; a verdict should not.
WEB_NICENESS = 10


def _lower_priority() -> None:
    if not lower_priority(WEB_NICENESS):  # not Linux, or not permitted: normal priority
        logger.debug("web thread keeps its normal priority")


def yielding_to_inspection(app: Any) -> Any:
    """``app`` as a WSGI callable that lowers each serving thread's priority on its first
    request (waitress makes its worker threads itself)."""
    lowered = threading.local()

    def serve(environ: dict, start_response: Any) -> Any:
        if not getattr(lowered, "done", False):
            _lower_priority()
            lowered.done = True
        return app(environ, start_response)

    return serve


def server_options() -> dict[str, Any]:
    """waitress's bounds, each stated above with its reason."""
    return {
        "threads": THREADS,
        "connection_limit": CONNECTION_LIMIT,
        "channel_timeout": CHANNEL_TIMEOUT_S,
        "cleanup_interval": CLEANUP_INTERVAL_S,
        "max_request_header_size": MAX_HEADER_BYTES,
        # waitress refuses a body whose Content-Length reaches this from the headers alone,
        # before reading any of it (the app refuses the same sizes, but only after).
        "max_request_body_size": MAX_REQUEST_BYTES + 1,
        "outbuf_high_watermark": OUTBUF_HIGH_WATERMARK,
        # Keep reading a connection while its request runs, so a live viewer that left is
        # seen at once (``waitress.client_disconnected``) and its stream slot freed.
        "channel_request_lookahead": 1,
        "asyncore_use_poll": True,  # select() fails on descriptors above 1024
        "ident": "inspector",
    }


class WebServer:
    """The UI on ``config.web.host:port``; ``close()`` stops it. A crash here never stops
    inspection: the server runs in its own daemon thread."""

    def __init__(self, config: Config, store: Store, live: Any = None,
                 monitor: Any = None, metrics: Any = None) -> None:
        self.app = create_app(config, store, live, monitor, metrics)
        self._server = create_server(yielding_to_inspection(self.app), host=config.web.host,
                                     port=config.web.port, **server_options())
        self.url = f"http://{config.web.host}:{self._server.effective_port}/"
        self._url_file = Path(config.storage.root) / WEB_URL_FILE
        self._thread = threading.Thread(target=self._serve, name="web", daemon=True)

    def start(self) -> None:
        self._thread.start()
        logger.info("web UI on %s", self.url)
        if not self.app.extensions["store"].users():  # a first start: nobody can sign in
            logger.warning("the web UI has no users yet; create an admin with: inspector "
                           "users add NAME --role admin --config FILE")
        try:  # where the box's own commands (inspector promote, rollback) find the API
            write_atomic(self._url_file, self.url.encode())
        except OSError as exc:
            logger.warning("cannot write %s (%s); inspector promote will not find the UI",
                           self._url_file, exc)

    def _serve(self) -> None:
        _lower_priority()  # the thread that accepts connections and reads requests
        try:
            self._server.run()
        except Exception:  # the UI may die; the line keeps inspecting
            logger.exception("web UI stopped")

    @staticmethod
    def demo_users(store: Store) -> list[tuple[str, str]]:
        """One user per role, named after it, with a fresh random password each run."""
        return [(role, add_user(store, role, role, replace=True)) for role in ROLES]

    def close(self) -> None:
        # Closing the listener alone leaves keep-alive connections in waitress's loop,
        # which then runs on; close them all and stop the worker threads.
        for channel in list(self._server._map.values()):
            channel.close()
        self._server.task_dispatcher.shutdown(timeout=2)
        self._thread.join(5)
