"""Administration: users and the audit log of label, threshold, model and user changes."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
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
    url_for,
)

from inspector.errors import InspectorError
from web.api import audit_filter
from web.auth import ROLES, add_user, login_required
from web.params import float_arg
from web.times import local_time

bp = Blueprint("admin", __name__, url_prefix="/admin")
logger = logging.getLogger(__name__)
EFFECT_POINTS = 120  # thresholds on the curve a user moves along


@bp.get("/")
@login_required("admin")
def home() -> Any:
    store = current_app.extensions["store"]
    action, user = audit_filter(request.args)
    audit = [{**entry, "time": local_time(entry["created_ns"])}
             for entry in store.audit_log(200, action, user)]
    live = current_app.extensions["live"]
    model = None
    if live is not None:
        card = live.detector.card
        model = {"name": card.name, "sha256": live.detector.model.sha256,
                 "threshold": card.threshold.value, "method": card.threshold.method,
                 "undo_to": live.previous.threshold if _threshold_undoable(live) else None}
    return render_template("admin.html", users=store.users(), audit=audit, roles=ROLES,
                           model=model, actions=store.audit_actions(),
                           audit_filter={"action": action or "",
                                         "user": "system" if user == "" else user or ""})


@bp.post("/threshold")
@login_required("admin")
def threshold() -> Any:
    live = _running_pipeline()
    text = request.form.get("threshold", "").strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        flash(f"Threshold not changed: {text[:40]!r} is not a number; type one like "
              f"{live.detector.threshold:.4g}")
        return redirect(url_for("admin.home"))
    try:
        previous = live.detector.threshold
        edited = live.set_threshold(value, g.user["name"])
    except (ValueError, InspectorError) as exc:
        flash(f"Threshold not changed: {exc}")
        return redirect(url_for("admin.home"))
    current_app.extensions["store"].audit(
        "threshold", {"model_sha256": live.detector.model.sha256, "previous": previous,
                      "threshold": value}, g.user["name"])
    kept = _keep_threshold(edited)
    flash(f"Threshold set to {value:g} (was {previous:g})"
          + ("; a restart keeps it." if kept else "; it lasts until restart."))
    return redirect(url_for("admin.home"))


@bp.get("/threshold/effects")
@login_required("admin")
def threshold_effects() -> Any:
    """What other thresholds would have done, before one is set: rejects among the last
    ``hours`` of parts and false rejects and escapes on the labeled history, all from the
    scores the running model gave (a threshold change keeps its hash, so they compare)."""
    from inspector.evaluation import threshold_effects as effects

    store = current_app.extensions["store"]
    live = current_app.extensions["live"]
    model = (store.active_model() if live is None else {
        "sha256": live.detector.model.sha256, "name": live.detector.card.name,
        "threshold": live.detector.threshold})
    if model is None:
        abort(404, "no model has scored parts here yet")
    hours = float_arg(request.args, "hours", 24.0, 0.1, 24 * 366.0)
    since = time.time_ns() - int(hours * 3.6e12)
    recent = np.array([score for score, _ in store.model_scores(model["sha256"],
                                                                 since_ns=since)])
    labeled = store.model_scores(model["sha256"], labeled=True)
    good = np.array([score for score, label in labeled if label == "good"])
    defect = np.array([score for score, label in labeled if label == "defect"])
    return jsonify(model=model, hours=hours, recent=int(recent.size),
                   labeled={"good": int(good.size), "defect": int(defect.size)},
                   effects=effects(good, defect, recent, points=EFFECT_POINTS,
                                   include=(model["threshold"],)))


@bp.post("/rollback")
@login_required("admin")
def rollback() -> Any:
    """Undo the last threshold change. Model changes are rolled back on the Models page,
    through the registry, so that a restart keeps what the line runs."""
    live = _running_pipeline()
    if not _threshold_undoable(live):
        flash("No threshold change to undo; model changes are rolled back on the Models page.")
        return redirect(url_for("admin.home"))
    before, restored = live.detector.threshold, live.previous.threshold
    restored_model = live.previous.model
    live.rollback()
    _keep_threshold(restored_model)
    current_app.extensions["store"].audit(
        "threshold", {"model_sha256": live.detector.model.sha256, "previous": before,
                      "threshold": restored, "undo": True}, g.user["name"])
    flash(f"Threshold back to {restored:g}; it takes over with the next frame.")
    return redirect(url_for("admin.home"))


def _keep_threshold(model: Any) -> bool:
    """The running threshold made the registry's, so a restart keeps it; False when it
    cannot be kept (the change still holds until restart, and the log says why)."""
    try:
        current_app.extensions["registry"].keep_threshold(model)
    except (InspectorError, OSError) as exc:
        logger.error("threshold %.4g not kept for restarts: %s", model.card.threshold.value, exc)
        return False
    return True


def _threshold_undoable(live: Any) -> bool:
    """The previous model is the running one with another threshold (same ONNX bytes)."""
    previous = live.previous
    return previous is not None and previous.model.sha256 == live.detector.model.sha256


@bp.post("/users")
@login_required("admin")
def create_user() -> Any:
    """Add a user, or with ``reset`` (the button beside each user) give an existing one a
    new password and the chosen role; adding never resets anyone silently."""
    name, role = request.form.get("name", ""), request.form.get("role", "")
    reset = request.form.get("reset") == "1"
    try:
        password = add_user(current_app.extensions["store"], name, role, replace=reset,
                            by=g.user["name"])
    except ValueError as exc:
        flash(f"User not saved: {exc}")
    else:
        current_app.extensions["login_lockout"].clear(name)  # a new password, a fresh start
        flash(f"User {name} ({role}) {'reset' if reset else 'created'}; password: {password}")
    return redirect(url_for("admin.home"))


@bp.post("/users/<name>/role")
@login_required("admin")
def set_role(name: str) -> Any:
    """Another role for a user, password kept (their sessions end). Not one's own: an
    admin who demoted themselves could lock the box's administration out."""
    role = request.form.get("role", "")
    if role not in ROLES:
        abort(400, f"role must be one of {', '.join(ROLES)}")
    if name == g.user["name"]:
        flash("You cannot change your own role; sign in as another admin to do it.")
    elif current_app.extensions["store"].set_role(name, role, g.user["name"]):
        flash(f"User {name} is now {role}; they sign in again to use it.")
    else:
        abort(404, f"no user {name!r}")
    return redirect(url_for("admin.home"))


@bp.post("/users/<name>/disabled")
@login_required("admin")
def set_disabled(name: str) -> Any:
    """Disable a user (sessions end at once, sign-in refused) or enable them again. An
    admin cannot disable themselves: the box must keep one way in."""
    disable = request.form.get("disabled") == "1"
    if disable and name == g.user["name"]:
        flash("You cannot disable yourself; sign in as another admin to do it.")
    elif current_app.extensions["store"].set_disabled(name, disable, g.user["name"]):
        flash(f"User {name} {'disabled: signed out and refused' if disable else 'enabled'}.")
    else:
        abort(404, f"no user {name!r}")
    return redirect(url_for("admin.home"))


def _running_pipeline() -> Any:
    """The in-process inspection service; model changes need one."""
    live = current_app.extensions["live"]
    if live is None:
        abort(409, "no running pipeline to change")
    return live
