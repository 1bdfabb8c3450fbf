"""A frame's outcome on its way out, and the verdict as it is published and recorded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inspector.bus import Frame
from inspector.model import Detector, Prediction
from inspector.store import InspectionRecord


@dataclass(frozen=True)
class Verdict:
    """A frame's outcome waiting for its turn to be sent out."""

    frame: Frame
    prediction: Prediction | None
    detector: Detector | None
    latency: dict[str, float]
    error: str | None
    counter: str
    regions: list[dict[str, Any]]


@dataclass(frozen=True)
class Result:
    """One verdict, as published and recorded."""

    record: InspectionRecord
    rejected_at_output: bool  # what the reject gate does: errors count as rejects when fail-safe

    def document(self) -> dict[str, Any]:
        r = self.record
        return {
            "camera": r.camera, "seq": r.seq, "part_id": r.part_id, "verdict": r.verdict,
            "reject": self.rejected_at_output, "score": r.score, "threshold": r.threshold,
            "model_sha256": r.model_sha256, "captured_ns": r.captured_ns,
            "inspected_ns": r.inspected_ns, "latency_ms": r.latency_ms, "regions": r.regions,
            "error": r.error,
        }
