"""Defect regions: the connected parts of the anomaly map above the threshold, as boxes."""

from __future__ import annotations

import cv2
import numpy as np

MAX_REGIONS = 20  # the worst ones; a frame with more is one big defect anyway


def find_regions(
    anomaly_map: np.ndarray,
    threshold: float,
    min_area_px: int = 16,
    mm_per_pixel: float | None = None,
) -> list[dict[str, float | int | None]]:
    """Boxes ``x, y, w, h`` (frame pixels) of the blobs where the map reaches ``threshold``,
    with their area in pixels (and mm² when the camera's scale is known) and peak value,
    strongest first."""
    above = (anomaly_map >= threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(above, connectivity=8)
    regions = []
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        if area < min_area_px:
            continue
        window = anomaly_map[y : y + h, x : x + w]
        peak = float(window[labels[y : y + h, x : x + w] == label].max())
        regions.append({
            "x": x, "y": y, "w": w, "h": h, "area_px": area,
            "area_mm2": None if mm_per_pixel is None else round(area * mm_per_pixel**2, 3),
            "peak": peak,
        })
    regions.sort(key=lambda r: r["peak"], reverse=True)
    return regions[:MAX_REGIONS]
