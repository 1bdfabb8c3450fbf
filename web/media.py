"""Stored images (frames, overlays, thumbnails), only from inside the store's image folder.

Only regular files reached without a symbolic link: the store writes none under
``images/``, so a link there was put by someone else and may point anywhere on the box.
They are private to the signed-in user and never cached (``private, no-store``): a shared
panel's browser or a proxy keeps no copy of the parts after sign-out.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO, Any

from flask import Blueprint, abort, current_app, send_file

from web.auth import login_required

bp = Blueprint("media", __name__, url_prefix="/media")


@bp.get("/<path:name>")
@login_required()
def image(name: str) -> Any:
    store = current_app.extensions["store"]
    parts = name.split("/")
    # Traversal attempts and anything outside images/ look like nothing at all.
    if parts[0] != "images" or len(parts) < 2 or any(
            p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
        abort(404)
    opened = open_inside(store.images, parts[1:])
    if opened is None:
        abort(404)
    handle, size = opened
    response = send_file(handle, download_name=parts[-1], conditional=False, etag=False,
                         max_age=None)
    response.content_length = size
    response.headers["Cache-Control"] = "private, no-store"
    return response


def open_inside(root: Path, parts: list[str]) -> tuple[IO[bytes], int] | None:
    """The regular file ``root/parts...`` opened for reading, with its size; None when a
    link is on the way, the real path leaves ``root``, or it is no regular file."""
    top = os.path.realpath(root)  # the folder itself may be a link an integrator made
    path = os.path.join(top, *parts)
    current = top
    for part in parts:
        current = os.path.join(current, part)
        try:
            if stat.S_ISLNK(os.lstat(current).st_mode):
                return None
        except OSError:
            return None
    if os.path.realpath(path) != path or os.path.commonpath([top, path]) != top:
        return None
    try:
        # O_NOFOLLOW: a link swapped in after the checks still fails; O_NONBLOCK: a FIFO
        # does not hang the thread (it fails the regular-file check below). POSIX only.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb"), info.st_size
