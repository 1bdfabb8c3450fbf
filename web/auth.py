"""Login, logout, roles. Passwords are hashed with Werkzeug's maintained scrypt/pbkdf2."""

from __future__ import annotations

import functools
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
from werkzeug.security import check_password_hash, generate_password_hash

from inspector.store import Store

ROLES = ("operator", "qa", "admin")
bp = Blueprint("auth", __name__)


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def add_user(store: Store, name: str, role: str, password: str | None = None) -> str:
    """Create or reset a user; returns the password (a random one when none is given)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not name or len(name) > 64 or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError("a user name is 1-64 letters, digits, '-' or '_'")
    password = password or secrets.token_urlsafe(9)
    store.add_user(name, role, hash_password(password))
    return password


@bp.before_app_request
def load_user() -> None:
    name = session.get("user")
    g.user = None
    if name:
        user = current_app.extensions["store"].get_user(name)
        if user and not user["disabled"]:
            g.user = user
            session.permanent = True  # refreshed each request: the idle timeout restarts


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
        user = current_app.extensions["store"].get_user(name)
        if user and not user["disabled"] and check_password_hash(user["password_hash"], password):
            session.clear()
            session["user"] = user["name"]
            session.permanent = True
            target = request.args.get("next", "")
            # Only local paths: never bounce a signed-in user to another site.
            if not target.startswith("/") or target.startswith("//"):
                target = url_for("index")
            return redirect(target)
        flash("Wrong user name or password.")
    return render_template("login.html")


@bp.post("/logout")
def logout() -> Any:
    session.clear()
    return redirect(url_for("auth.login"))
