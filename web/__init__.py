"""The web UI: a Flask app over the results store and the live inspection state.

One blueprint per area (``auth``, ``operator``, ``review``, ``admin``, ``api``,
``media``, ``models``, ``health`` for machines, ...). Requests read and label stored
results; they never run inference. Every script and style is served from the package:
the panel works with no network beyond the box.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import (
    Flask,
    current_app,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import HTTPException

from inspector.config import Config
from inspector.errors import ConfigError
from inspector.files import make_secret, read_secret
from inspector.local_api import API_TOKEN_FILE
from inspector.store import Store
from web.security import LOGIN_MAX_BYTES, REFUSED_UNTIL_KEY

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024  # forms and JSON here are small; anything larger is refused
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
csrf = CSRFProtect()


def create_app(config: Config, store: Store, live: Any = None, monitor: Any = None,
               metrics: Any = None, **overrides: Any) -> Flask:
    """The UI for ``store``; ``live`` is the running ``InspectionService``, ``monitor`` its
    ``inspector.monitor.Monitor`` and ``metrics`` its ``Metrics`` when in-process."""
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
        WTF_CSRF_CHECK_DEFAULT=False,  # checked by _check_csrf below, which knows tokens
        DEFECT_TYPES=list(config.web.defect_types[:9]),
        **overrides,
    )
    app.extensions["store"] = store
    app.extensions["live"] = live
    app.extensions["monitor"] = monitor
    app.extensions["metrics"] = metrics
    app.extensions["inspector_config"] = config
    app.extensions["api_token"] = _api_token(Path(config.storage.root))
    # Not at the top: `inspector --help` would load ONNX.
    from inspector.loop import JobRunner, Registry

    app.extensions["registry"] = Registry(store)
    app.extensions["jobs"] = JobRunner()  # refits and shadow runs, one at a time

    from web import (
        admin,
        api,
        auth,
        health,
        live,
        live_shadow,
        media,
        models,
        operator,
        review,
        security,
        stats,
    )
    from web.times import local_time

    app.add_template_filter(local_time, "localtime")
    app.extensions["login_lockout"] = security.Lockout()
    app.extensions["login_gate"] = security.HashGate()
    security.dummy_hash()  # made now, so no sign-in pays for making it
    # Hooks run in the order registered: who is asking, then refuse bodies from nobody,
    # then the rate limit, then CSRF (which reads the form), then the view.
    app.before_request(auth.load_user)
    app.before_request(_guard_bodies)
    # The memory store keeps, per client address that posted in the last hour, at most
    # 100 timestamps: addresses are real TCP peers (a handshake is needed), so its size is
    # bounded by the hosts that can reach the box, a few KiB each.
    limiter = Limiter(get_remote_address, app=app, storage_uri="memory://",
                      strategy="moving-window")
    # It logs every refused request at INFO: under a flood, thousands of lines a second.
    logging.getLogger("flask-limiter").setLevel(logging.WARNING)
    app.extensions["login_limiter"] = limiter
    csrf.init_app(app)
    app.before_request(_check_csrf)

    # On the auth blueprint's POSTs (sign-in, sign-out), checked before CSRF reads the form.
    limiter.limit(security.LOGIN_RATE_PER_ADDRESS, methods=["POST"],
                  error_message="Too many sign-in attempts from this address; wait a minute.",
                  )(auth.bp)
    for module in (auth, operator, review, admin, api, media, stats, live, models,
                   live_shadow, health):
        app.register_blueprint(module.bp)
    for code in (400, 403, 404, 409, 413, 429, 503):
        app.register_error_handler(code, _error_page)

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

    # Outermost: an address the limit refused is answered before any of the above runs.
    app.wsgi_app = app.extensions["refused_addresses"] = security.RefusedAddresses(
        app.wsgi_app)
    return app


def _check_csrf() -> None:
    """Every state change from a browser carries the CSRF token; requests with the local
    API token (``web.auth``) carry no cookie, so they need none."""
    if current_app.config["WTF_CSRF_ENABLED"] and not g.get("via_token"):
        csrf.protect(apply_exemptions=True)


def _guard_bodies() -> Any:
    """Nobody reads a request body before knowing who sent it: a state-changing request
    without a signed-in user is answered here, unread. The sign-in form, the one body
    anyone may send, is held to a few KiB."""
    if request.endpoint == "auth.login":
        request.max_content_length = LOGIN_MAX_BYTES
        return None
    if request.method in SAFE_METHODS or g.get("user") is not None:
        return None
    if request.path.startswith("/api/") or request.path.startswith("/media/"):
        return jsonify(error="sign in first"), 401
    return redirect(url_for("auth.login"))


def _error_page(error: HTTPException) -> Any:
    """Refusals people meet (too large, too many, busy) as a page, or JSON under /api/,
    that says why, with the ``Retry-After`` that tells clients when to come back."""
    code = error.code or 500
    if request.path.startswith("/api/"):
        response = make_response(jsonify(error=error.description), code)
    else:
        response = make_response(render_template(
            "error.html", code=code, title=error.name, message=error.description), code)
    retry_after = dict(error.get_headers()).get("Retry-After")
    if isinstance(error, RateLimitExceeded):
        breached = current_app.extensions["login_limiter"].current_limit
        reset_at = breached.reset_at if breached is not None else time.time() + 60
        wait_s = max(1, int(reset_at - time.time()))
        retry_after = str(wait_s)
        if REFUSED_UNTIL_KEY in request.environ:  # remembered for this address
            request.environ[REFUSED_UNTIL_KEY] = time.monotonic() + wait_s
    if retry_after:
        response.headers["Retry-After"] = retry_after
    return response


def _secret_key(root: Path) -> str:
    """A random key kept beside the store, so sessions survive a restart. An empty or
    damaged file is replaced with a new key, which only signs everyone out."""
    path = root / "web_secret_key"
    try:
        key = read_secret(path)
    except OSError as exc:
        raise ConfigError([f"web.secret_key: cannot read {path} ({exc}); fix its "
                           "permissions or set web.secret_key"]) from exc
    if key is not None:
        return key
    if path.exists():
        logger.warning("%s is empty or damaged; writing a new key (everyone signs in again)",
                       path)
    try:
        return make_secret(path)
    except OSError as exc:
        raise ConfigError([f"web.secret_key: cannot write {path} ({exc}); make "
                           f"{root} writable or set web.secret_key"]) from exc


def _api_token(root: Path) -> str:
    """The local API token (see ``web.auth``), made at the first start of the UI."""
    path = root / API_TOKEN_FILE
    try:
        return read_secret(path) or make_secret(path)
    except OSError as exc:
        raise ConfigError([f"storage.root: cannot read or write {path} ({exc})"]) from exc
