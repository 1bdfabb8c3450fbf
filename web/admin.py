"""Administration: users and the audit log of label, threshold, model and user changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)

from web.auth import ROLES, add_user, login_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/")
@login_required("admin")
def home() -> Any:
    store = current_app.extensions["store"]
    audit = [{**entry, "time": datetime.fromtimestamp(entry["created_ns"] / 1e9, UTC)
              .isoformat(timespec="seconds")} for entry in store.audit_log(200)]
    live = current_app.extensions["live"]
    model = None
    if live is not None:
        card = live.detector.card
        model = {"name": card.name, "sha256": live.detector.model.sha256,
                 "threshold": card.threshold.value, "method": card.threshold.method,
                 "can_rollback": live.previous is not None}
    return render_template("admin.html", users=store.users(), audit=audit, roles=ROLES,
                           model=model)


@bp.post("/threshold")
@login_required("admin")
def threshold() -> Any:
    live = _running_pipeline()
    try:
        value = float(request.form.get("threshold", ""))
        previous = live.detector.threshold
        live.set_threshold(value, g.user["name"]).join(30)
    except ValueError as exc:
        flash(f"Threshold not changed: {exc}")
        return redirect(url_for("admin.home"))
    current_app.extensions["store"].audit(
        "threshold", {"model_sha256": live.detector.model.sha256, "previous": previous,
                      "threshold": value}, g.user["name"])
    flash(f"Threshold set to {value:g} (was {previous:g}); it lasts until restart.")
    return redirect(url_for("admin.home"))


@bp.post("/rollback")
@login_required("admin")
def rollback() -> Any:
    live = _running_pipeline()
    before = live.detector.model.sha256
    if not live.rollback():
        flash("No previous model to go back to.")
        return redirect(url_for("admin.home"))
    current_app.extensions["store"].audit("model", {"action": "rollback", "from": before},
                                          g.user["name"])
    flash("Rolled back to the previous model; it takes over with the next frame.")
    return redirect(url_for("admin.home"))


@bp.post("/users")
@login_required("admin")
def create_user() -> Any:
    name, role = request.form.get("name", ""), request.form.get("role", "")
    try:
        password = add_user(current_app.extensions["store"], name, role)
    except ValueError as exc:
        flash(str(exc))
    else:
        current_app.extensions["login_lockout"].clear(name)  # a new password, a fresh start
        flash(f"User {name} ({role}) created; password: {password}")
    return redirect(url_for("admin.home"))


def _running_pipeline() -> Any:
    """The in-process inspection service; model changes need one."""
    live = current_app.extensions["live"]
    if live is None:
        abort(409, "no running pipeline to change")
    return live
