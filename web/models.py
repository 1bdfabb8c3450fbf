"""The Models page and API: the models this box keeps, refitting a candidate from the labeled
history, its shadow run against the active model, promoting one and rolling back.

Refits and shadow runs are background jobs, one at a time (``JobRunner``), at a low CPU
priority beside live inspection; the page polls their progress. Promotion is explicit: the
request names the model it confirms (the page asks on a page of its own, with the model's
figures on the labeled history). With ``inspector run`` the model takes over between two
frames; with the UI alone it is the model the next run starts with.
"""

from __future__ import annotations

import math
import time
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
from werkzeug.exceptions import HTTPException

from inspector.errors import ModelError, UnknownModel
from inspector.identifiers import check_camera_id
from inspector.loop import (
    MIN_REFIT_SAMPLES,
    Entry,
    JobRunner,
    JobRunning,
    Registry,
    as_job,
    refit_candidate,
    refit_samples,
    shadow_candidate,
)
from web.api import current_alarms
from web.auth import login_required
from web.live_shadow import live_shadow_status
from web.params import json_object, number
from web.times import local_time

MAX_SINCE_HOURS = 24 * 366 * 10.0  # ten years: "all the history", still a finite time
# Labeled parts, not used in a candidate's fit, below which its shadow figures are too few
# to judge it by: one false reject in 20 good parts is already 5%.
FRESH_GOOD = 20
FRESH_DEFECT = 5

bp = Blueprint("models", __name__)


def registry() -> Registry:
    return current_app.extensions["registry"]


def jobs() -> JobRunner:
    return current_app.extensions["jobs"]


def _may_promote() -> bool:
    role = g.user["role"]
    return role == "admin" or (
        role == "qa" and current_app.extensions["inspector_config"].web.qa_can_promote)


def _entry_json(entry: Entry) -> dict[str, Any]:
    shadow = registry().shadow(entry)
    summary = None if shadow is None else {
        "at": _time(shadow["at_ns"]), "labeled": shadow["labeled"],
        "changed": len(shadow["changed"]),
        **{f"{side}_{key}": shadow[side][key] for side in ("before", "after")
           for key in ("false_rejects", "escapes", "auroc")}}
    return {**entry.to_json(), "added": _time(entry.added_ns), "shadow": summary}


def _few(curve: list[dict], threshold: float, rows: int = 12) -> list[dict]:
    """About ``rows`` evenly spread points of a threshold curve, and the one at ``threshold``
    (marked ``current``): a table a person reads, not every point a chart would draw."""
    if not curve:
        return []
    at = min(range(len(curve)), key=lambda i: abs(curve[i]["threshold"] - threshold))
    step = max(1, len(curve) // rows)
    keep = sorted(set(range(0, len(curve), step)) | {at, len(curve) - 1})
    return [{**curve[i], "current": i == at} for i in keep]


def _time(ns: int) -> str:
    return local_time(ns)


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
        entry = registry().switch(name, "promote", g.user["name"], live)
        if live is not None and live.live_shadow is not None:  # its comparison is over
            live.live_shadow.stop(f"{entry.name} promoted")
        return entry
    except UnknownModel as exc:
        abort(404, str(exc))
    except ModelError as exc:
        abort(409, f"Not promoted: {exc}")


def _when(entry: Entry) -> str:
    if current_app.extensions["live"] is None:
        return "it is the model the next `inspector run` starts with"
    return "it takes over from the next frame"


def _scope(values: Any) -> dict[str, Any]:
    """Which history a job reads: ``cameras`` (a list, or comma-separated) and
    ``since_hours``; bad values are a 400 that says which."""
    cameras = values.get("cameras") or None
    if isinstance(cameras, str):
        cameras = [c.strip() for c in cameras.split(",") if c.strip()] or None
    if cameras is not None:
        if not isinstance(cameras, list) or len(cameras) > 64:
            abort(400, "cameras must be a list of at most 64 camera ids")
        try:
            cameras = [check_camera_id(c) for c in cameras]
        except ValueError as exc:
            abort(400, str(exc))
    hours = number(values, "since_hours", None, 0.0, MAX_SINCE_HOURS)
    return {"cameras": cameras,
            "since_ns": None if hours is None else time.time_ns() - int(hours * 3.6e12)}


def _start(kind: str, job: Any, description: str) -> dict[str, Any]:
    try:
        jobs().start(kind, job, description)
    except JobRunning as exc:
        abort(409, str(exc))
    return jobs().status()


def _start_refit(values: Any) -> dict[str, Any]:
    name = values.get("name")
    try:
        registry().check_new_name(name)
    except ValueError as exc:
        abort(400, str(exc))
    except ModelError as exc:
        abort(409, str(exc))
    include = values.get("include_passes") in (True, "on", "true", "1")
    job = as_job(refit_candidate, registry(), name, g.user["name"], include_passes=include,
                 **_scope(values))
    return _start("refit", job, f"refit {name} by {g.user['name']}")


def _entry(name: str) -> Entry:
    """The model ``name`` (or sha256 prefix) kept here; 404 with the reason otherwise."""
    try:
        return registry().get(name)
    except UnknownModel as exc:
        abort(404, str(exc))


def _start_shadow(name: str, values: Any) -> dict[str, Any]:
    entry = _entry(name)
    job = as_job(shadow_candidate, registry(), entry.name, **_scope(values))
    return _start("shadow", job, f"shadow run of {entry.name} by {g.user['name']}")


# -- pages --------------------------------------------------------------------------------

@bp.get("/models")
@login_required("qa")
def page() -> Any:
    reg = registry()
    entries = reg.entries()
    history = [{**a, "time": _time(a["at_ns"])} for a in reg.store.activations(20)]
    names = {e.sha256: e.name for e in entries}
    samples = refit_samples(reg.store)
    return render_template("models.html", entries=[_entry_json(e) for e in entries],
                           previous=reg.previous(), history=history, names=names,
                           may_promote=_may_promote(), samples=samples, job=jobs().status(),
                           job_running=jobs().running, alarms=current_alarms(),
                           live_shadow=live_shadow_status(),
                           can_live_shadow=current_app.extensions["live"] is not None,
                           min_samples=MIN_REFIT_SAMPLES, pass_rate=_pass_rate())


def _pass_rate() -> float:
    return current_app.extensions["inspector_config"].storage.pass_sample_rate


@bp.post("/models/refit")
@login_required("qa")
def refit_form() -> Any:
    try:
        _start_refit(request.form)
    except HTTPException as exc:  # said on the page the user came from
        flash(f"Refit not started: {exc.description}")
    else:
        flash(f"Refit of {request.form.get('name')} started; it runs beside inspection at "
              "low priority.")
    return redirect(url_for("models.page"))


@bp.post("/models/<name>/shadow")
@login_required("qa")
def shadow_form(name: str) -> Any:
    try:
        _start_shadow(name, request.form)
    except HTTPException as exc:
        flash(f"Shadow run not started: {exc.description}")
    else:
        flash(f"Shadow run of {name} started.")
    return redirect(url_for("models.page"))


@bp.get("/models/<name>/shadow")
@login_required("qa")
def shadow_page(name: str) -> Any:
    entry = _entry(name)
    report = registry().shadow(entry)
    if report is None:
        abort(404, f"{entry.name} has had no shadow run yet; start one on the Models page.")
    changed = [{**c, "time": _time(c["inspected_ns"]),
                "thumb_url": url_for("media.image", name=c["thumb_path"])
                if c.get("thumb_path") else None} for c in report["changed"]]
    return render_template("shadow.html", entry=_entry_json(entry), report=report,
                           curve=_few(report["curve"], report["after"]["threshold"]),
                           changed=changed, at=_time(report["at_ns"]),
                           may_promote=_may_promote(), fresh=_fresh_labels(entry, report))


def _fresh_labels(entry: Entry, report: dict[str, Any]) -> dict[str, Any] | None:
    """How few labeled parts judged the candidate, when too few to trust its figures, and
    where QA labels more: the parts inspected since the candidate was made, unlabeled. A
    refit learns from every labeled-good frame, and those are left out of its shadow run."""
    confusion = report["after"]["confusion"]
    good = confusion["true_passes"] + confusion["false_rejects"]
    defect = confusion["true_rejects"] + confusion["escapes"]
    if good >= FRESH_GOOD and defect >= FRESH_DEFECT:
        return None
    hours = max(1, math.ceil((time.time_ns() - entry.added_ns) / 3.6e12))
    return {"good": good, "defect": defect, "excluded": report.get("excluded_training", 0),
            "need_good": FRESH_GOOD, "need_defect": FRESH_DEFECT,
            "url": url_for("review.grid", label="none", since_hours=hours)}


@bp.get("/models/<name>/promote")
@login_required("qa")
def confirm_page(name: str) -> Any:
    entry = _entry(name)
    active = next((e for e in registry().entries() if e.active), None)
    return render_template("promote.html", entry=_entry_json(entry),
                           report=registry().shadow(entry),
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


@bp.post("/api/models/refit")
@login_required("qa")
def start_refit() -> Any:
    return jsonify(job=_start_refit(json_object())), 202


@bp.get("/api/models/refit/samples")
@login_required("qa")
def samples() -> Any:
    """What a refit with these choices would fit on, before starting it."""
    include = request.args.get("include_passes") in ("true", "1", "on")
    chosen = refit_samples(registry().store, include_passes=include, **_scope(request.args))
    return jsonify(**chosen.to_json(), describe=chosen.describe(), minimum=MIN_REFIT_SAMPLES)


@bp.post("/api/models/<name>/shadow")
@login_required("qa")
def start_shadow(name: str) -> Any:
    return jsonify(job=_start_shadow(name, json_object())), 202


@bp.get("/api/models/<name>/shadow")
@login_required("qa")
def shadow_report(name: str) -> Any:
    report = registry().shadow(_entry(name))
    if report is None:
        abort(404, f"{name} has had no shadow run yet")
    return jsonify(report)


@bp.get("/api/jobs")
@login_required("qa")
def job_status() -> Any:
    return jsonify(job=jobs().status())


@bp.post("/api/jobs/cancel")
@login_required("qa")
def cancel_job() -> Any:
    return jsonify(cancelled=jobs().cancel())
