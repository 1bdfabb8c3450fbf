"""Reading images from disk and checking arrays before they reach a model.

Each problem is an ``ImageError`` that names the file and what is wrong with it,
so one bad file in a folder of thousands is easy to find.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspector.errors import ImageError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
MIN_SIDE = 16  # smaller than two backbone strides: nothing to inspect
MAX_PIXELS = 64_000_000  # well above any line camera; larger is a mistake, not a frame


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; an error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder")
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise ImageError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return found


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 BGR (H, W, 3); greyscale files are expanded to 3 channels."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if data.size == 0:
        raise ImageError(f"{path}: empty file")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"{path}: not a decodable image (corrupt or not an image file)")
    try:
        return check_frame(image)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None


def check_frame(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as uint8 BGR (H, W, 3), or raise an ``ImageError`` saying what is wrong.

    Accepts (H, W) and (H, W, 1) greyscale, which is expanded to three channels.
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageError(f"expected uint8 pixels, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"expected shape (H, W, 3) or (H, W), got {image.shape}")
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ImageError(f"image {width}x{height} is smaller than {MIN_SIDE} pixels on a side")
    if height * width > MAX_PIXELS:
        raise ImageError(f"image {width}x{height} is larger than {MAX_PIXELS:,} pixels")
    return image
