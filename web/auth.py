"""Login, logout, roles. Passwords are hashed with Werkzeug's maintained scrypt/pbkdf2.

A session names its user and the user's session generation when it was signed in; it is
honoured only while that generation is current, so signing out (or a password reset) ends
it on the server, not just in the browser that asked. Sign-in is guarded by
``web.security``: a per-address rate limit, a lockout per user name, one password check
at a time, and the same hash cost for unknown names as for known ones.
"""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import TooManyRequests
from werkzeug.security import check_password_hash, generate_password_hash

from inspector.store import Store
from web.security import BUSY_RETRY_S, Busy, HashGate, Lockout, dummy_hash, safe_next

ROLES = ("operator", "qa", "admin")
LOOPBACK = frozenset({"127.0.0.1", "::1"})
bp = Blueprint("auth", __name__)
logger = logging.getLogger(__name__)


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def add_user(store: Store, name: str, role: str, password: str | None = None,
             replace: bool = False, by: str | None = None) -> str:
    """Create a user (with ``replace``: or reset an existing one's role and password);
    returns the password (a random one when none is given). An existing name without
    ``replace`` is a ValueError. ``by`` names who did it in the audit log."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not name or len(name) > 64 or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError("a user name is 1-64 letters, digits, '-' or '_'")
    password = password or secrets.token_urlsafe(9)
    store.add_user(name, role, hash_password(password), replace, by)
    return password


def load_user() -> None:
    """The signed-in user as ``g.user``, or None. ``create_app`` runs it before every other
    hook, so the body and CSRF guards know who is asking."""
    g.user = None
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        g.user = _local_admin(header.removeprefix("Bearer ").strip())
        return
    name = session.get("user")
    if not name:
        return
    user = current_app.extensions["store"].get_user(name)
    if user and not user["disabled"] and session.get("epoch") == user["session_epoch"]:
        g.user = user
        session.permanent = True  # refreshed each request: the idle timeout restarts
    else:
        session.clear()  # signed out elsewhere, reset or disabled: this cookie is done


def _local_admin(token: str) -> dict[str, Any] | None:
    """The box's own commands (``inspector promote``, ``rollback``) act as an admin with the
    local API token, a secret file under the storage root: whoever can read it can change
    the store directly anyway. Accepted from this host only, so a copied token is no use
    from elsewhere (this host: loopback, or the one address the UI listens on); the token
    carries no cookie a page could ride on, so no CSRF token."""
    expected = current_app.extensions["api_token"]
    here = LOOPBACK | {current_app.extensions["inspector_config"].web.host}
    if not hmac.compare_digest(token.encode(), expected.encode()) or (
            request.remote_addr not in here):
        return None
    g.via_token = True
    actor = "".join(c for c in request.headers.get("X-Inspector-Actor", "")[:32]
                    if c.isalnum() or c in "-_.")
    return {"name": f"local:{actor or 'cli'}", "role": "admin", "disabled": 0}


def login_required(*roles: str) -> Callable:
    """Only signed-in users, and of ``roles`` when given (admin may do everything)."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(**kwargs: Any) -> Any:
            if g.user is None:
                if request.path.startswith("/api/") or request.path.startswith("/media/"):
                    return jsonify(error="sign in first"), 401
                return redirect(url_for("auth.login", next=request.path))
            if roles and g.user["role"] not in roles and g.user["role"] != "admin":
                abort(403)
            return view(**kwargs)

        return wrapped

    return decorate


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method == "POST":
        name = request.form.get("username", "")[:64]
        password = request.form.get("password", "")[:256]
        lockout: Lockout = current_app.extensions["login_lockout"]
        wait = lockout.retry_after(name)
        if wait:
            raise _locked(wait)
        user = current_app.extensions["store"].get_user(name)
        gate: HashGate = current_app.extensions["login_gate"]
        try:
            with gate.turn():
                # Unknown names are checked against a dummy hash: the same cost either way.
                matches = check_password_hash(user["password_hash"] if user else dummy_hash(),
                                              password)
        except Busy:
            raise TooManyRequests("Many sign-ins are being checked right now; try again in a "
                                  "moment.", retry_after=BUSY_RETRY_S) from None
        if matches and user is not None and not user["disabled"]:
            lockout.clear(name)
            session.clear()
            session["user"] = user["name"]
            session["epoch"] = user["session_epoch"]
            session.permanent = True
            return redirect(safe_next(request.args.get("next")) or url_for("index"))
        locked = lockout.failed(name)
        if locked:
            # Once per lock, not per attempt: a flood must not flood the log too.
            logger.warning("sign-in for %r locked for %d s after repeated wrong passwords "
                           "(the last from %s)", name, locked, request.remote_addr)
            raise _locked(locked)
        flash("Wrong user name or password.")
    return render_template("login.html")


def _locked(seconds: float) -> TooManyRequests:
    minutes = max(1, round(seconds / 60))
    return TooManyRequests(f"Too many wrong passwords for this user name. Try again in "
                           f"{minutes} minute{'s' if minutes > 1 else ''}, or ask an admin "
                           f"to reset the password.", retry_after=int(seconds) + 1)


@bp.post("/logout")
def logout() -> Any:
    if g.user is not None:
        current_app.extensions["store"].end_sessions(g.user["name"])
    session.clear()
    return redirect(url_for("auth.login"))
