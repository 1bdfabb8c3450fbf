"""Anomaly maps turned into pictures people look at: heat overlays, region boxes, thumbnails.

Every function takes uint8 BGR images as OpenCV gives them (a (H, W) grey image is
accepted and converted) and returns a new array; the input is never modified.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

COLORMAP = cv2.COLORMAP_JET


def _describe(array: np.ndarray) -> str:
    return f"{array.dtype} {tuple(array.shape)}"


def as_bgr(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Return ``image`` as uint8 (H, W, 3) BGR, converting grey; raise ValueError otherwise."""
    if not isinstance(image, np.ndarray):
        raise ValueError(
            f"{what} must be a numpy uint8 (H, W, 3) BGR or (H, W) grey array, "
            f"got {type(image).__name__}"
        )
    shape_ok = image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))
    if image.dtype != np.uint8 or not shape_ok:
        raise ValueError(
            f"{what} must be uint8 (H, W, 3) BGR or (H, W) grey, got {_describe(image)}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{what} must not be empty, got shape {tuple(image.shape)}")
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    return cv2.cvtColor(np.ascontiguousarray(image.reshape(image.shape[:2])), cv2.COLOR_GRAY2BGR)


def heatmap_overlay(
    image: np.ndarray,
    anomaly_map: np.ndarray,
    low: float,
    high: float,
    alpha: float = 0.45,
) -> np.ndarray:
    """Blend a colour-mapped anomaly map onto ``image``; return a new uint8 (H, W, 3) BGR array.

    The map is resized (bilinear) to the image size when it differs, normalised as
    ``(map - low) / (high - low)`` clipped to 0..1 (all zeros when ``high <= low``), coloured
    with the JET colormap and blended with per-pixel weight ``alpha * norm``. Pixels whose
    normalised value is 0 (map <= low) keep the original image exactly. NaN map values count
    as 0, +inf as 1.
    """
    bgr = as_bgr(image)
    if not isinstance(anomaly_map, np.ndarray):
        raise ValueError(
            f"anomaly_map must be a numpy float (h, w) array, got {type(anomaly_map).__name__}"
        )
    numeric = np.issubdtype(anomaly_map.dtype, np.floating) or np.issubdtype(
        anomaly_map.dtype, np.integer
    )
    if anomaly_map.ndim == 3 and anomaly_map.shape[2] == 1:
        anomaly_map = anomaly_map[:, :, 0]
    if not numeric or anomaly_map.ndim != 2:
        raise ValueError(f"anomaly_map must be a float (h, w) array, got {_describe(anomaly_map)}")
    if anomaly_map.shape[0] == 0 or anomaly_map.shape[1] == 0:
        raise ValueError(f"anomaly_map must not be empty, got shape {tuple(anomaly_map.shape)}")
    low, high, alpha = float(low), float(high), float(alpha)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"low and high must be finite, got low={low}, high={high}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")

    height, width = bgr.shape[:2]
    amap = anomaly_map.astype(np.float32, copy=False)
    if amap.shape != (height, width):
        amap = cv2.resize(
            np.ascontiguousarray(amap), (width, height), interpolation=cv2.INTER_LINEAR
        )
    if high <= low or alpha == 0.0:
        return bgr.copy()
    # Whole-array float32 arithmetic: it runs on every stored reject and live frame.
    with np.errstate(invalid="ignore", over="ignore"):
        norm = (amap - np.float32(low)) * np.float32(1.0 / (high - low))
    np.nan_to_num(norm, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(norm, 0.0, 1.0, out=norm)
    colours = cv2.applyColorMap(cv2.convertScaleAbs(norm, alpha=255.0), COLORMAP)
    weight = norm * np.float32(alpha)
    # OpenCV blends in one pass (half the time of numpy's float arithmetic). It divides by
    # the weights' sum plus 1e-5, which rounds back to the input: cold pixels stay exact.
    return cv2.blendLinear(colours, np.ascontiguousarray(bgr), weight, 1.0 - weight)


def draw_regions(
    image: np.ndarray,
    boxes: Sequence[tuple[int, int, int, int]],
    color: tuple[int, int, int] = (0, 0, 255),
    thickness: int | None = None,
) -> np.ndarray:
    """Return a copy of ``image`` with one rectangle per ``(x, y, w, h)`` box.

    A box covers pixels ``x .. x+w-1`` and ``y .. y+h-1``; its outline is drawn on that
    edge (thicker lines grow both ways). ``thickness`` defaults to
    ``max(1, round(min(H, W) / 200))``. A grey image comes back as BGR so colours show.
    """
    out = as_bgr(image).copy()
    height, width = out.shape[:2]
    if thickness is None:
        thickness = max(1, round(min(height, width) / 200))
    if int(thickness) < 1:
        raise ValueError(f"thickness must be >= 1, got {thickness}")
    bgr = tuple(int(c) for c in color)
    if len(bgr) != 3:
        raise ValueError(f"color must be a (B, G, R) triple, got {color!r}")
    for box in boxes:
        if len(box) != 4:
            raise ValueError(f"each box must be (x, y, w, h), got {box!r}")
        x, y, w, h = (int(v) for v in box)
        if w <= 0 or h <= 0:
            raise ValueError(f"box width and height must be positive, got {box!r}")
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), bgr, int(thickness))
    return out


def thumbnail(image: np.ndarray, max_side: int = 256) -> np.ndarray:
    """Return a copy scaled (INTER_AREA) so its longer side is at most ``max_side``.

    The aspect ratio is kept (each side rounded, at least 1 px); images already small
    enough come back unscaled. Any dtype and channel count that OpenCV resizes is accepted.
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
        got = _describe(image) if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image must be an (H, W) or (H, W, C) array, got {got}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image must not be empty, got shape {tuple(image.shape)}")
    if int(max_side) < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    height, width = image.shape[:2]
    longest = max(height, width)
    if longest <= max_side:
        return image.copy()
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    out = cv2.resize(np.ascontiguousarray(image), size, interpolation=cv2.INTER_AREA)
    if image.ndim == 3 and out.ndim == 2:  # OpenCV drops a single channel axis
        out = out[:, :, None]
    return out
