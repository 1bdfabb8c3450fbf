"""The detector: a verified fitted model in an ONNX Runtime session, frames in, predictions out.

``inspector predict``, ``inspector eval``/``calibrate`` and the running pipeline all
score through this one class, so a frame gets the same score from each of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from inspector.errors import ModelError
from inspector.imaging import check_frame
from inspector.model.card import LoadedModel, load_model
from inspector.model.runtime import create_session
from inspector.model.tiling import split, stitch

RUNTIME_ERRORS = (ort.capi.onnxruntime_pybind11_state.Fail,
                  ort.capi.onnxruntime_pybind11_state.InvalidArgument)


@dataclass(frozen=True)
class Prediction:
    """One frame's result. ``anomaly_map`` is float32 at the frame's own (H, W)."""

    score: float
    threshold: float
    anomaly_map: np.ndarray
    display_score: float  # 0..1 for people; 0.5 is the threshold

    @property
    def verdict(self) -> str:
        return "reject" if self.score >= self.threshold else "pass"


class Detector:
    """Scores uint8 BGR frames with one fitted model."""

    def __init__(self, model: LoadedModel, threads: int = 0,
                 providers: Sequence[str] = ("auto",)) -> None:
        self.model = model
        self.card = model.card
        self.session = create_session(model.onnx, threads, providers)

    @classmethod
    def open(cls, model_dir: str | Path, threads: int = 0,
             providers: Sequence[str] = ("auto",)) -> Detector:
        return cls(load_model(model_dir), threads, providers)

    @property
    def threshold(self) -> float:
        return self.card.threshold.value

    def warm_up(self) -> None:
        """One run on a blank frame, so the first real frame does not pay for allocation."""
        height, width = self.card.input.size
        self.predict(np.zeros((height, width, 3), np.uint8))

    def predict(self, frame: np.ndarray) -> Prediction:
        return self.predict_batch([frame])[0]

    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[Prediction]:
        """Score frames; same-size frames run as one batch. Bad frames raise ``ImageError``."""
        frames = [check_frame(f) for f in frames]
        if self.card.tiling is not None:
            return [self._predict_tiled(f) for f in frames]
        if len(frames) == 1:  # a view, not a copy: the common case on a CPU
            scores, maps = self._run(frames[0][None])
        elif len({f.shape for f in frames}) == 1:
            scores, maps = self._run(np.stack(frames))
        else:
            results = [self._run(f[None]) for f in frames]
            scores = np.concatenate([s for s, _ in results])
            maps = [m[0] for _, m in results]
        return [self._prediction(float(s), m) for s, m in zip(scores, maps, strict=True)]

    def _predict_tiled(self, frame: np.ndarray) -> Prediction:
        spec = self.card.tiling
        tiles = split(frame, spec.tile, spec.overlap)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, t in enumerate(tiles):
            groups.setdefault(t.image.shape, []).append(i)
        scores = np.empty(len(tiles), np.float32)
        maps: list[np.ndarray] = [np.empty(0)] * len(tiles)
        for indices in groups.values():
            s, m = self._run(np.stack([tiles[i].image for i in indices]))
            for j, i in enumerate(indices):
                scores[i], maps[i] = s[j], m[j]
        full = stitch(tiles, maps, *frame.shape[:2])
        return self._prediction(float(scores.max()), full)

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            scores, maps = self.session.run(["score", "anomaly_map"], {"image": batch})
        except RUNTIME_ERRORS as exc:
            raise ModelError(f"model {self.card.name} failed on {batch.shape}: {exc}") from exc
        return scores, maps

    def _prediction(self, score: float, anomaly_map: np.ndarray) -> Prediction:
        if not np.isfinite(score):
            raise ModelError(f"model {self.card.name} produced a non-finite score ({score})")
        return Prediction(
            score=score,
            threshold=self.threshold,
            anomaly_map=anomaly_map,
            display_score=self.card.score_scale.display(score),
        )
