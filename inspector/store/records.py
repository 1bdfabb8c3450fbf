"""What the inspection core hands the store for one frame, and the verdicts and labels it knows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inspector.identifiers import check_camera_id, check_counter, check_part_id

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


def check_record(record: InspectionRecord) -> None:
    """``ValueError`` naming the field when the store cannot take ``record``: the same
    identifier rules as the frame bus (``inspector.identifiers``), and a known verdict."""
    if record.verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {record.verdict!r}")
    check_camera_id(record.camera)
    check_part_id(record.part_id)
    check_counter(record.seq, "seq")
    check_counter(record.captured_ns, "captured_ns")
    check_counter(record.inspected_ns, "inspected_ns")
