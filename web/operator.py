"""The operator panel: last verdict per camera and the queue of rejects to confirm or override."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from web.auth import login_required

bp = Blueprint("operator", __name__)


@bp.get("/panel")
@login_required("operator")
def panel() -> Any:
    # The page is a shell; static/panel.js fills it from /api/panel and keeps it fresh.
    return render_template("panel.html")
