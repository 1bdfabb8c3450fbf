"""Live shadow from the Models page and the API: a candidate scores live frames beside the
active model for a set time (``inspector.loop.live_shadow``); only inside ``inspector run``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, g, jsonify, redirect, request, url_for

from inspector.errors import InspectorError, ModelError, UnknownModel
from inspector.loop import LiveShadow, Registry
from web.auth import login_required
from web.params import json_object, number

bp = Blueprint("live_shadow", __name__)


def _registry() -> Registry:
    return current_app.extensions["registry"]


def _start_live_shadow(name: str, values: Any) -> dict[str, Any]:
    """Run ``name`` beside the active model on live frames for ``minutes``."""
    live = current_app.extensions["live"]
    if live is None:
        abort(409, "A live shadow needs live frames: start the UI inside `inspector run`.")
    running = live.live_shadow
    if running is not None and running.running:
        abort(409, f"a live shadow of {running.name} is running; stop it first")
    minutes = number(values, "minutes", 60.0)
    try:
        entry = _registry().get(name)
        if entry.sha256 == live.detector.model.sha256:
            abort(409, f"{entry.name} is the active model; shadow a candidate")
        shadow = LiveShadow(_registry().load(entry.name), _registry().store, minutes,
                            name=entry.name)
    except UnknownModel as exc:
        abort(404, str(exc))
    except ModelError as exc:
        abort(409, str(exc))
    except InspectorError as exc:
        abort(400, str(exc))
    live.live_shadow = shadow.start()
    _registry().store.audit("live_shadow", {"model": entry.name, "sha256": entry.sha256,
                                           "minutes": minutes}, g.user["name"])
    return shadow.status()


def live_shadow_status() -> dict[str, Any] | None:
    live = current_app.extensions["live"]
    shadow = None if live is None else live.live_shadow
    return None if shadow is None else shadow.status()


def _stop_live_shadow() -> bool:
    live = current_app.extensions["live"]
    shadow = None if live is None else live.live_shadow
    if shadow is None or not shadow.running:
        return False
    shadow.stop(g.user["name"])
    return True


@bp.post("/models/<name>/live-shadow")
@login_required("qa")
def start_form(name: str) -> Any:
    status = _start_live_shadow(name, request.form)
    flash(f"Live shadow of {status['model']} started for {status['minutes']:g} minutes; its "
          "verdicts are stored and never reach the line.")
    return redirect(url_for("models.page"))


@bp.post("/models/live-shadow/stop")
@login_required("qa")
def stop_form() -> Any:
    flash("Live shadow stopped." if _stop_live_shadow() else "No live shadow was running.")
    return redirect(url_for("models.page"))


@bp.post("/api/models/<name>/live-shadow")
@login_required("qa")
def start(name: str) -> Any:
    return jsonify(shadow=_start_live_shadow(name, json_object())), 202


@bp.get("/api/live-shadow")
@login_required("qa")
def status() -> Any:
    return jsonify(shadow=live_shadow_status())


@bp.post("/api/live-shadow/stop")
@login_required("qa")
def stop() -> Any:
    return jsonify(stopped=_stop_live_shadow())
