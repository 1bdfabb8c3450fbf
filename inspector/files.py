"""Durable file writes: after a crash or power cut the old file or the new one, never half."""

from __future__ import annotations

import os
import secrets
import string
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


SECRET_HEX = 64  # characters of a generated secret: 32 random bytes


def read_secret(path: Path) -> str | None:
    """The hex secret kept in ``path``; None when there is none, or it is empty or damaged
    (an old non-atomic write cut short). ``OSError`` when it cannot be read."""
    try:
        text = path.read_bytes().decode("ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
    if len(text) == SECRET_HEX and all(c in string.hexdigits for c in text):
        return text
    return None


def make_secret(path: Path) -> str:
    """A new random hex secret written atomically to ``path`` (mode 0600: mkstemp's)."""
    secret = secrets.token_hex(SECRET_HEX // 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, secret.encode("ascii"))
    return secret
