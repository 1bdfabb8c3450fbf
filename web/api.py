"""The JSON API the pages use, and that integrators can script against (see README)."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
import zipfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from flask import Blueprint, Response, abort, current_app, g, jsonify, request, url_for
from PIL import Image

from inspector.store import VERDICTS, SearchFilters
from web.auth import login_required
from web.params import MAX_OFFSET, SQLITE_INT_MAX, float_arg, int_arg
from web.times import local_time

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_PAGE = 500
MAX_NOTE = 1000
QUEUE_SIZE = 24
ERROR_WINDOW_NS = 3600 * 10**9  # the panel's error summary covers the last hour
MAX_SINCE_HOURS = 24 * 366 * 100.0  # a century: "everything", still a finite time
# A spreadsheet opening labels.csv runs a cell that starts with one of these as a formula
# (=HYPERLINK(...), +cmd|...); a leading quote makes it plain text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _store():
    return current_app.extensions["store"]


def row_json(row: dict[str, Any]) -> dict[str, Any]:
    """An inspection as the UI shows it: times readable, images as URLs."""
    out = {k: row[k] for k in ("id", "camera", "seq", "part_id", "verdict", "score", "threshold",
                               "model_sha256", "latency_ms", "regions", "label", "defect_type",
                               "error", "inspected_ns")}
    out["time"] = local_time(row["inspected_ns"])
    for key in ("image_path", "overlay_path", "thumb_path"):
        out[key.replace("_path", "_url")] = (url_for("media.image", name=row[key])
                                             if row[key] else None)
    return out


def filters_from(args: Any) -> SearchFilters:
    """Filters from query parameters; a bad value is a 400, not a 500."""
    verdict = args.get("verdict") or None
    if verdict is not None and verdict not in VERDICTS:
        abort(400, f"verdict must be one of {', '.join(VERDICTS)}")
    label = args.get("label") or None
    if label is not None and label not in ("good", "defect", "none"):
        abort(400, "label must be good, defect or none")
    since_h = float_arg(args, "since_hours", None, 0.0, MAX_SINCE_HOURS)
    view = args.get("view", "")
    after_id = args.get("after_id", "")
    return SearchFilters(
        camera=(args.get("camera") or None), verdict=verdict, label=label,
        min_score=float_arg(args, "min_score", None), max_score=float_arg(args, "max_score", None),
        since_ns=None if since_h is None else time.time_ns() - int(since_h * 3.6e12),
        model=(args.get("model") or None), disagreements=view == "disagreements",
        order="closeness" if view == "disagreements" else "newest",
        after_id=None if after_id == "" else int_arg(args, "after_id", 0, 0, SQLITE_INT_MAX),
    )


@bp.get("/inspections")
@login_required()
def inspections() -> Any:
    filters = filters_from(request.args)
    limit = int_arg(request.args, "limit", 50, 1, MAX_PAGE)
    offset = int_arg(request.args, "offset", 0, 0, MAX_OFFSET)
    rows = _store().search(filters, limit, offset)
    return jsonify(items=[row_json(r) for r in rows], total=_store().search_count(filters))


@bp.get("/inspections/<int:inspection_id>")
@login_required()
def inspection(inspection_id: int) -> Any:
    row = _store().get(inspection_id)
    if row is None:
        abort(404)
    return jsonify(**row_json(row), history=_store().label_history(inspection_id))


def _apply_label(inspection_id: int, body: dict[str, Any]) -> dict[str, Any]:
    label = body.get("label")
    defect_type = body.get("defect_type") or None
    note = body.get("note") or None
    regions = body.get("regions") or None  # boxes drawn on the detail page
    role = g.user["role"]
    allowed = ("good", "defect") if role == "operator" else ("good", "defect", "none")
    if label == "none" and role == "operator" and _own_last_label(inspection_id):
        allowed = ("none",)  # an operator's undo of their own mis-tap
    if label not in allowed:
        abort(400, f"label must be one of {', '.join(allowed)}"
                   + (" (an operator takes back only their own last label)"
                      if label == "none" else ""))
    if defect_type is not None and (label != "defect" or defect_type not in
                                     current_app.config["DEFECT_TYPES"]):
        abort(400, "defect_type must be one of the configured types, on a defect label")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
        abort(400, f"note must be text of at most {MAX_NOTE} characters")
    # The role rule: an operator's one tap confirms or overrides the machine's verdict, and
    # may correct an operator's label; a label from QA or an admin (or from a user since
    # removed) is reviewed truth the re-fit learns from, and only QA or an admin changes it.
    if role == "operator" and _store().label_author_role(inspection_id) not in (None,
                                                                                  "operator"):
        abort(409, "this sample was labeled by QA; ask QA to change it")
    try:
        _store().add_label(inspection_id, label, g.user["name"], defect_type, note, regions)
    except KeyError:
        abort(404)
    except ValueError as exc:  # the store's own check of the drawn regions
        abort(400, str(exc))
    return row_json(_store().get(inspection_id))


def _own_last_label(inspection_id: int) -> bool:
    """The sample's current label is the signed-in user's (so they may take it back)."""
    history = _store().label_history(inspection_id)
    return bool(history) and history[-1]["user"] == g.user["name"] and \
        history[-1]["label"] != "none"


@bp.post("/inspections/<int:inspection_id>/label")
@login_required("operator", "qa")
def label(inspection_id: int) -> Any:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, "send a JSON object")
    return jsonify(_apply_label(inspection_id, body))


@bp.post("/inspections/labels")
@login_required("qa")
def bulk_label() -> Any:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("ids"), list):
        abort(400, "send {\"ids\": [...], \"label\": ...}")
    ids = body["ids"]
    if len(ids) > MAX_PAGE or not all(isinstance(i, int) for i in ids):
        abort(400, f"ids must be at most {MAX_PAGE} integers")
    if body.get("regions"):
        abort(400, "regions are drawn on one sample at a time")
    return jsonify(items=[_apply_label(i, body) for i in ids])


EXPORT_LIMIT = 10_000


def region_mask(image: Path, regions: list[dict[str, int]]) -> bytes:
    """A PNG the size of ``image``: 255 inside the drawn boxes (clipped to the frame), 0
    elsewhere. Only the image's header is read for its size."""
    with Image.open(image) as frame:
        width, height = frame.size
    mask = np.zeros((height, width), np.uint8)
    for box in regions:
        mask[box["y"]:box["y"] + box["h"], box["x"]:box["x"] + box["w"]] = 255
    out = io.BytesIO()
    Image.fromarray(mask).save(out, "PNG")
    return out.getvalue()


def plain_cell(value: Any) -> Any:
    """Text a spreadsheet shows as text: one that would start a formula gets a quote."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


@bp.get("/export.zip")
@login_required("qa")
def export() -> Any:
    """Labeled samples matching the filters as a dataset a re-fit can read: the frames in
    ``good/`` and ``defect/<type>/``, the boxes drawn on defects as masks in
    ``ground_truth/<type>/<id>_mask.png`` (MVTec's layout: 255 inside a box, 0 outside),
    and ``labels.csv`` with every row's facts, the boxes as JSON."""
    store = _store()
    filters = filters_from(request.args)
    if filters.label is None:  # unlabeled samples teach nothing
        filters = replace(filters, labeled_only=True)
    rows = store.search(filters, EXPORT_LIMIT)
    drawn = store.label_regions([row["id"] for row in rows])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        table = io.StringIO()
        writer = csv.writer(table)
        writer.writerow(["id", "camera", "seq", "part_id", "time", "verdict", "score",
                         "threshold", "label", "defect_type", "file", "regions", "mask"])
        for row in rows:
            name = mask = ""
            regions = drawn.get(row["id"], [])  # only a defect label carries boxes
            if row["image_path"] and row["label"]:
                kind = row["defect_type"] or "untyped"
                folder = "good" if row["label"] == "good" else f"defect/{kind}"
                name = f"{folder}/{row['id']}{Path(row['image_path']).suffix}"
                try:
                    archive.write(store.root / row["image_path"], name)
                    if regions:
                        mask = f"ground_truth/{kind}/{row['id']}_mask.png"
                        archive.writestr(mask, region_mask(store.root / row["image_path"],
                                                           regions))
                except OSError:
                    name = mask = ""  # deleted meanwhile: the row still goes into the table
            item = row_json(row)
            writer.writerow([plain_cell(v) for v in (
                row["id"], row["camera"], row["seq"], row["part_id"], item["time"],
                row["verdict"], row["score"], row["threshold"], row["label"],
                row["defect_type"], name,
                json.dumps(regions, separators=(",", ":")) if regions else "", mask)])
        archive.writestr("labels.csv", table.getvalue())
    store.audit("export", {"rows": len(rows), "filters": request.args.to_dict()},
                g.user["name"])
    return Response(buffer.getvalue(), mimetype="application/zip", headers={
        "Content-Disposition": "attachment; filename=inspector-export.zip"})


@bp.get("/panel")
@login_required("operator")
def panel() -> Any:
    """What the operator panel shows: per-camera tiles and the queue of unreviewed rejects."""
    store = _store()
    now = time.time_ns()
    midnight = int(datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
                   .timestamp() * 1e9)
    today = _today_counts(store, midnight)
    last_minute = store.verdict_counts(now - 60_000_000_000)
    alarms = current_alarms()
    down = {a["subject"]: a["reason"] for a in alarms if a["kind"] == "camera_down"}
    tiles = []
    for camera in _panel_cameras(today):
        latest = store.search(SearchFilters(camera=camera), limit=1)
        counts = today.get(camera, dict.fromkeys(VERDICTS, 0))
        total = sum(counts.values())
        tiles.append({
            "camera": camera,
            "last": row_json(latest[0]) if latest else None,
            "per_minute": sum(last_minute.get(camera, {}).values()),
            "today": counts,
            "yield": None if total == 0 else counts["pass"] / total,
            "down": down.get(camera),  # why the camera delivers nothing, while it does not
        })
    # Errors are the box's problem, not the part's (late, stale, a model failure): they
    # are rejected at the gate when fail-safe, but shown apart, by cause, not queued as
    # rejects to review.
    rejects = SearchFilters(unreviewed_rejects=True, verdict="reject")
    queue = store.search(rejects, limit=QUEUE_SIZE)
    return jsonify(cameras=tiles, queue=[row_json(r) for r in queue],
                   queue_total=store.search_count(rejects),
                   errors=store.error_causes(now - ERROR_WINDOW_NS),
                   alarms=alarms)


def current_alarms() -> list[dict[str, Any]]:
    """The alarms raised now, oldest first, for the people at the line: the running box's
    own board inside ``inspector run``, else those the store's history holds open (written
    by the box that runs apart from this UI)."""
    monitor = current_app.extensions["monitor"]
    if monitor is not None:
        raised = [alarm.document() for alarm in monitor.board.active()]
    else:
        raised = list(reversed(_store().alarms(active_only=True, limit=20)))
    return [{key: alarm[key] for key in ("kind", "subject", "reason", "raised_ns")}
            for alarm in raised]


@bp.get("/alarms")
@login_required()
def alarms() -> Any:
    """The alarm history, newest first (``?active=1``: only those raised now)."""
    active = request.args.get("active") in ("1", "true")
    return jsonify(items=_store().alarms(active_only=active,
                                         limit=int_arg(request.args, "limit", 200, 1, MAX_PAGE)))


def current_accounting() -> dict[str, dict[str, Any]] | None:
    """Per camera: captured, dropped, inspected, ... (the same numbers as /metrics); None
    when no inspection runs in this process."""
    monitor = current_app.extensions["monitor"]
    if monitor is not None:
        return monitor.totals()
    live = current_app.extensions["live"]
    return live.accounting() if live is not None else None


@bp.get("/accounting")
@login_required()
def accounting() -> Any:
    return jsonify(current_accounting() or {})


def audit_filter(args: Any) -> tuple[str | None, str | None]:
    """The audit log's ``?action=`` and ``?user=``: (action, user), each None when not
    given; the user ``system`` (the box itself, no signed-in user) becomes ""."""
    action = args.get("action") or None
    user = (args.get("user") or "").strip()[:64] or None
    return action, "" if user == "system" else user


@bp.get("/audit")
@login_required("admin")
def audit() -> Any:
    """The audit log, newest first, filtered by ``audit_filter``."""
    return jsonify(items=_store().audit_log(int_arg(request.args, "limit", 200, 1, MAX_PAGE),
                                            *audit_filter(request.args)))


_today_lock = threading.Lock()


def _today_counts(store: Any, midnight: int) -> dict[str, dict[str, int]]:
    """Today's verdicts per camera, kept as a running total: each poll counts only the
    rows added since the last one instead of the whole day."""
    cache = current_app.extensions.setdefault("today_counts", {"day": None})
    with _today_lock:
        if cache["day"] != midnight:
            cache.update(day=midnight, last_id=0, counts={})
        last_id = store.last_id()
        for camera, new in store.verdict_counts(midnight, cache["last_id"], last_id).items():
            counts = cache["counts"].setdefault(camera, dict.fromkeys(VERDICTS, 0))
            for verdict, n in new.items():
                counts[verdict] += n
        cache["last_id"] = last_id
        return {camera: dict(c) for camera, c in cache["counts"].items()}


def _panel_cameras(today: dict[str, Any]) -> list[str]:
    """The running box's cameras, in the config's order, whether or not they deliver (a
    dead one shows, marked down); apart from inspection, the cameras seen today."""
    config = current_app.extensions["inspector_config"]
    if current_app.extensions["monitor"] is not None and config.cameras:
        return [camera.id for camera in config.cameras]
    live = current_app.extensions["live"]
    return sorted(set(today) | set(live.accounting() if live is not None else []))


@bp.errorhandler(400)
@bp.errorhandler(404)
@bp.errorhandler(409)
def json_error(error: Any) -> Any:
    return jsonify(error=error.description), error.code
