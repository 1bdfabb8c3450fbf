"""Administration: users and the audit log of label, threshold, model and user changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from web.auth import ROLES, add_user, login_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/")
@login_required("admin")
def home() -> Any:
    store = current_app.extensions["store"]
    audit = [{**entry, "time": datetime.fromtimestamp(entry["created_ns"] / 1e9, UTC)
              .isoformat(timespec="seconds")} for entry in store.audit_log(200)]
    return render_template("admin.html", users=store.users(), audit=audit, roles=ROLES)


@bp.post("/users")
@login_required("admin")
def create_user() -> Any:
    name, role = request.form.get("name", ""), request.form.get("role", "")
    try:
        password = add_user(current_app.extensions["store"], name, role)
    except ValueError as exc:
        flash(str(exc))
    else:
        flash(f"User {name} ({role}) created; password: {password}")
    return redirect(url_for("admin.home"))
