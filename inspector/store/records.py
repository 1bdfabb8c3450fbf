"""What the inspection core hands the store for one frame, and the verdicts and labels it knows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inspector.identifiers import check_camera_id, check_counter, check_part_id

VERDICTS = ("pass", "reject", "error")
LABELS = ("good", "defect", "none")  # "none" clears a label (an undo); history keeps it
# Boxes a person may draw on one defect label: more than this is painting, not marking.
MAX_LABEL_REGIONS = 50
MAX_PIXEL = 65_535  # a coordinate in a stored frame (frames are far smaller)


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


def check_label_regions(regions: object) -> list[dict[str, int]]:
    """Drawn boxes as stored: a list of at most ``MAX_LABEL_REGIONS`` ``{"x", "y", "w",
    "h"}`` of whole pixels in the stored frame; ``ValueError`` saying what is wrong."""
    if not isinstance(regions, list) or len(regions) > MAX_LABEL_REGIONS:
        raise ValueError(f"regions must be a list of at most {MAX_LABEL_REGIONS} boxes")
    boxes = []
    for region in regions:
        if not isinstance(region, dict) or set(region) != {"x", "y", "w", "h"}:
            raise ValueError('each region is {"x", "y", "w", "h"} and nothing else')
        box = {key: region[key] for key in ("x", "y", "w", "h")}
        if not all(type(v) is int for v in box.values()):  # bool and float are not pixels
            raise ValueError("region coordinates are whole pixels")
        if not (0 <= box["x"] < MAX_PIXEL and 0 <= box["y"] < MAX_PIXEL
                and 1 <= box["w"] <= MAX_PIXEL - box["x"]
                and 1 <= box["h"] <= MAX_PIXEL - box["y"]):
            raise ValueError(f"a region must lie within 0..{MAX_PIXEL} with a width and "
                             "height of at least 1")
        boxes.append(box)
    return boxes
