"""What the inspection core hands the store for one frame, and the verdicts and labels it knows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VERDICTS = ("pass", "reject", "error")
LABELS = ("good", "defect", "none")  # "none" clears a label (an undo); history keeps it


@dataclass(frozen=True)
class InspectionRecord:
    """What the pipeline hands over for one frame."""

    camera: str
    seq: int
    part_id: str | None
    captured_ns: int  # capture timestamp, ns since epoch
    inspected_ns: int  # when the verdict was decided, ns since epoch
    verdict: str  # "pass" | "reject" | "error"
    score: float | None
    threshold: float | None
    model_sha256: str | None
    latency_ms: dict[str, float]  # e.g. {"queue": .., "model": .., "total": ..}
    regions: list[dict]  # e.g. [{"x", "y", "w", "h", "area_px", "area_mm2", "peak"}]
    error: str | None = None
    frame: np.ndarray | None = None  # uint8 BGR (H, W, 3); None: no image kept
    anomaly_map: np.ndarray | None = None  # float32 (H, W) or None
    map_low: float = 0.0  # display range for the heatmap overlay
    map_high: float = 1.0
