"""A frame's outcome on its way out, and the verdict as it is published and recorded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

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

    def record(self, verdict: str, error: str | None, latency: dict[str, float],
               inspected_ns: int) -> InspectionRecord:
        """The verdict as the store keeps it, decided at ``inspected_ns``."""
        header, prediction, detector = self.frame.header, self.prediction, self.detector
        scale = detector.card.score_scale if detector is not None else None
        return InspectionRecord(
            camera=header.camera, seq=header.seq, part_id=header.part_id,
            captured_ns=header.ts_ns, inspected_ns=inspected_ns, verdict=verdict,
            score=None if prediction is None else prediction.score,
            threshold=None if detector is None else detector.threshold,
            model_sha256=None if detector is None else detector.model.sha256,
            latency_ms=latency, regions=self.regions if verdict == "reject" else [],
            error=error, frame=np.ascontiguousarray(self.frame.image),
            anomaly_map=None if prediction is None else prediction.anomaly_map,
            map_low=scale.low if scale else 0.0, map_high=scale.high if scale else 1.0,
        )


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
