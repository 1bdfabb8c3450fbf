"""The web UI: a Flask app over the results store and the live inspection state.

One blueprint per area (``auth``, ``operator``, ``review``, ``admin``, ``api``,
``media``). Requests read and label stored results; they never run inference.
Every script and style is served from the package: the panel works with no
network beyond the box.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, g, redirect, url_for
from flask_wtf.csrf import CSRFProtect

from inspector.config import Config
from inspector.store import Store

MAX_REQUEST_BYTES = 64 * 1024  # forms and JSON here are small; anything larger is refused
csrf = CSRFProtect()


def create_app(config: Config, store: Store, live: Any = None, **overrides: Any) -> Flask:
    """The UI for ``store``; ``live`` is the running ``InspectionService`` when in-process."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=config.web.secret_key or _secret_key(Path(config.storage.root)),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=config.web.secure_cookies,
        SESSION_REFRESH_EACH_REQUEST=True,
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=config.web.idle_logout_minutes),
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        WTF_CSRF_TIME_LIMIT=None,  # the session's idle timeout bounds it
        DEFECT_TYPES=list(config.web.defect_types[:9]),
        **overrides,
    )
    app.extensions["store"] = store
    app.extensions["live"] = live
    app.extensions["inspector_config"] = config
    csrf.init_app(app)

    from web import admin, api, auth, live, media, operator, review, stats

    for module in (auth, operator, review, admin, api, media, stats, live):
        app.register_blueprint(module.bp)

    @app.get("/")
    def index():
        user = g.get("user")
        if user is None:
            return redirect(url_for("auth.login"))
        target = {"operator": "operator.panel", "qa": "review.grid"}.get(user["role"],
                                                                        "operator.panel")
        return redirect(url_for(target))

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
        )
        return response

    return app


def _secret_key(root: Path) -> str:
    """A random key kept beside the store, so sessions survive a restart."""
    path = root / "web_secret_key"
    root.mkdir(parents=True, exist_ok=True)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_hex(32)
        path.write_text(key)
        path.chmod(0o600)
        return key
