"""QA review: a filtered grid of samples, a detail view, relabeling by keyboard or in bulk."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, render_template, request

from inspector.store import VERDICTS
from web.api import filters_from, row_json
from web.auth import login_required
from web.params import MAX_OFFSET, int_arg

bp = Blueprint("review", __name__, url_prefix="/review")
PAGE = 60


@bp.get("/")
@login_required("qa")
def grid() -> Any:
    store = current_app.extensions["store"]
    filters = filters_from(request.args)
    page = int_arg(request.args, "page", 0, 0, MAX_OFFSET // PAGE)
    rows = store.search(filters, PAGE, page * PAGE)
    return render_template(
        "review.html", items=[row_json(r) for r in rows], total=store.search_count(filters),
        page=page, pages=PAGE, args=request.args, verdicts=VERDICTS,
        defect_types=current_app.config["DEFECT_TYPES"],
        disagreements=request.args.get("view") == "disagreements",
        pass_rate=current_app.extensions["inspector_config"].storage.pass_sample_rate,
    )


@bp.get("/<int:inspection_id>")
@login_required("qa")
def detail(inspection_id: int) -> Any:
    store = current_app.extensions["store"]
    row = store.get(inspection_id)
    if row is None:
        abort(404)
    # The grid's filters travel in the query string, so previous and next follow them.
    newer, older = store.neighbours(filters_from(request.args), inspection_id)
    query = request.query_string.decode()
    history = store.label_history(inspection_id)
    # The boxes drawn with the current label (only a defect label has any), shown to be
    # kept, moved or redrawn.
    drawn = history[-1]["regions"] if history else []
    return render_template("detail.html", item=row_json(row), history=history, regions=drawn,
                           defect_types=current_app.config["DEFECT_TYPES"],
                           newer=newer, older=older, query=f"?{query}" if query else "")
