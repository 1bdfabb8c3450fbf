"""Stored images (frames, overlays, thumbnails), only from inside the store's image folder."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, send_from_directory
from werkzeug.security import safe_join

from web.auth import login_required

bp = Blueprint("media", __name__, url_prefix="/media")


@bp.get("/<path:name>")
@login_required()
def image(name: str) -> Any:
    store = current_app.extensions["store"]
    parts = name.split("/")
    # Traversal attempts and anything outside images/ look like nothing at all.
    if (parts[0] != "images" or any(p in ("", ".", "..") or "\\" in p for p in parts)
            or safe_join(str(store.root), name) is None):
        abort(404)
    response = send_from_directory(store.root, name, max_age=3600)
    return response
