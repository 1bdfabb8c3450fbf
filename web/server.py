"""Serving the UI with waitress (a production WSGI server), in a thread of ``inspector run``."""

from __future__ import annotations

import logging
import threading
from typing import Any

from waitress.server import create_server

from inspector.config import Config
from inspector.store import Store
from web import create_app
from web.auth import ROLES, add_user

logger = logging.getLogger(__name__)


class WebServer:
    """The UI on ``config.web.host:port``; ``close()`` stops it. A crash here never stops
    inspection: the server runs in its own daemon thread."""

    def __init__(self, config: Config, store: Store, live: Any = None) -> None:
        self.app = create_app(config, store, live)
        self._server = create_server(self.app, host=config.web.host, port=config.web.port,
                                     threads=8, ident="inspector")
        self.url = f"http://{config.web.host}:{self._server.effective_port}/"
        self._thread = threading.Thread(target=self._serve, name="web", daemon=True)

    def start(self) -> None:
        self._thread.start()
        logger.info("web UI on %s", self.url)

    def _serve(self) -> None:
        try:
            self._server.run()
        except Exception:  # the UI may die; the line keeps inspecting
            logger.exception("web UI stopped")

    @staticmethod
    def demo_users(store: Store) -> list[tuple[str, str]]:
        """One user per role, named after it, with a fresh random password each run."""
        return [(role, add_user(store, role, role)) for role in ROLES]

    def close(self) -> None:
        # Closing the listener alone leaves keep-alive connections in waitress's loop,
        # which then runs on; close them all and stop the worker threads.
        for channel in list(self._server._map.values()):
            channel.close()
        self._server.task_dispatcher.shutdown(timeout=2)
        self._thread.join(5)
