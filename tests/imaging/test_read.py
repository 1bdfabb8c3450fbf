"""Reading image files: unreadable, empty and missing files get clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.errors import ImageError
from inspector.imaging import read_image


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty file"), (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not a decodable image"),
     (b"plain text, not an image", "not a decodable image")],
)
def test_bad_image_files_get_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        read_image(path)
    with pytest.raises(ImageError, match="cannot read"):
        read_image(tmp_path / "missing.png")
