"""The Models page and API: the models this box keeps, promoting one and rolling back.

Promotion is explicit: the request names the model it confirms (the page asks on a page of
its own, with the model's figures on the labeled history). With ``inspector run`` the model
takes over between two frames; with the UI alone it is the model the next run starts with.
"""

from __future__ import annotations

from datetime import UTC, datetime
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
    url_for,
)

from inspector.errors import ModelError, UnknownModel
from inspector.loop import Entry, Registry
from web.auth import login_required

bp = Blueprint("models", __name__)


def registry() -> Registry:
    return current_app.extensions["registry"]


def _may_promote() -> bool:
    role = g.user["role"]
    return role == "admin" or (
        role == "qa" and current_app.extensions["inspector_config"].web.qa_can_promote)


def _entry_json(entry: Entry) -> dict[str, Any]:
    return {**entry.to_json(), "added": _time(entry.added_ns)}


def _time(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="seconds")


def _switch(name: str, action: str, confirm: Any) -> Entry:
    """Promote ``name`` (or roll back) for the signed-in user; HTTP errors say why not."""
    if not _may_promote():
        abort(403, "Promoting models needs an admin (or QA where web.qa_can_promote is set).")
    live = current_app.extensions["live"]
    try:
        if action == "rollback":
            return registry().rollback(g.user["name"], live)
        if confirm != name:
            abort(400, f"Promotion needs explicit confirmation: confirm must be {name!r}.")
        return registry().switch(name, "promote", g.user["name"], live)
    except UnknownModel as exc:
        abort(404, str(exc))
    except ModelError as exc:
        abort(409, f"Not promoted: {exc}")


def _when(entry: Entry) -> str:
    if current_app.extensions["live"] is None:
        return "it is the model the next `inspector run` starts with"
    return "it takes over from the next frame"


# -- pages --------------------------------------------------------------------------------

@bp.get("/models")
@login_required("qa")
def page() -> Any:
    reg = registry()
    entries = reg.entries()
    history = [{**a, "time": _time(a["at_ns"])} for a in reg.store.activations(20)]
    names = {e.sha256: e.name for e in entries}
    return render_template("models.html", entries=[_entry_json(e) for e in entries],
                           previous=reg.previous(), history=history, names=names,
                           may_promote=_may_promote())


@bp.get("/models/<name>/promote")
@login_required("qa")
def confirm_page(name: str) -> Any:
    try:
        entry = registry().get(name)
    except UnknownModel as exc:
        abort(404, str(exc))
    active = next((e for e in registry().entries() if e.active), None)
    return render_template("promote.html", entry=_entry_json(entry),
                           active=None if active is None else _entry_json(active),
                           may_promote=_may_promote())


@bp.post("/models/<name>/promote")
@login_required("qa")
def promote_form(name: str) -> Any:
    entry = _switch(name, "promote", request.form.get("confirm"))
    flash(f"Promoted {entry.name}; {_when(entry)}.")
    return redirect(url_for("models.page"))


@bp.post("/models/rollback")
@login_required("qa")
def rollback_form() -> Any:
    entry = _switch("", "rollback", None)
    flash(f"Rolled back to {entry.name}; {_when(entry)}.")
    return redirect(url_for("models.page"))


# -- API ----------------------------------------------------------------------------------

@bp.get("/api/models")
@login_required("qa")
def listing() -> Any:
    reg = registry()
    previous = reg.previous()
    return jsonify(models=[_entry_json(e) for e in reg.entries()],
                   active=reg.active_sha(), previous=None if previous is None else previous.name,
                   activations=reg.store.activations(20))


@bp.post("/api/models/<name>/promote")
@login_required("qa")
def promote(name: str) -> Any:
    body = request.get_json(silent=True)
    confirm = body.get("confirm") if isinstance(body, dict) else None
    entry = _switch(name, "promote", confirm)
    return jsonify(promoted=entry.name, sha256=entry.sha256, takes_effect=_when(entry))


@bp.post("/api/models/rollback")
@login_required("qa")
def rollback() -> Any:
    entry = _switch("", "rollback", None)
    return jsonify(active=entry.name, sha256=entry.sha256, takes_effect=_when(entry))
