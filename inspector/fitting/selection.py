"""Choosing among candidate configurations from good images alone, on synthetic defects.

A fit holds some good images out. Copies of them get synthetic defects
(``inspector.fitting.anomalies``); a candidate is judged by how well its image scores
separate those copies from the clean originals (image AUROC). The same defects judge
every candidate, so the comparison is fair, and the same seed gives the same choice.

Today the candidates are the image score's aggregation: the mean of the highest
``top_fraction`` of the anomaly map. They share one fitted model, so judging them costs
one pass over the held-out images. On the real datasets the synthetic ranking agreed
with the real one (docs/accuracy.md); resolution and backbone are not chosen this way
yet, because the synthetic defects did not rank them as real defects did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inspector.evaluation import roc_auc

TOP_FRACTIONS = (0.001, 0.01, 0.05)  # candidate image-score aggregations
DEFAULT_TOP_FRACTION = 0.01  # without a selection, and on a tie
TIE = 0.005  # AUROC differences below this are noise: keep the default


@dataclass(frozen=True)
class Selection:
    """What was chosen and why, as the model card records it."""

    chosen: float
    aurocs: dict[float, float]  # candidate -> image AUROC on the synthetic defects
    clean: int  # held-out good images judged
    defects: int  # synthetic defects judged
    kinds: tuple[str, ...]

    def record(self) -> dict[str, Any]:
        return {
            "criterion": "image AUROC, held-out good images against synthetic defects on them",
            "held_out_images": self.clean,
            "synthetic_defects": self.defects,
            "kinds": list(self.kinds),
            "candidates": [{"top_fraction": f, "synthetic_auroc": round(a, 4)}
                           for f, a in self.aurocs.items()],
            "chosen": {"top_fraction": self.chosen},
        }


def top_mean(anomaly_map: np.ndarray, fraction: float) -> float:
    """The mean of the highest ``fraction`` of the map's pixels (at least one)."""
    flat = np.asarray(anomaly_map, np.float64).ravel()
    count = max(1, round(fraction * flat.size))
    return float(np.partition(flat, flat.size - count)[flat.size - count:].mean())


def choose_top_fraction(
    clean_maps: Sequence[np.ndarray],
    defect_maps: Sequence[np.ndarray],
    kinds: Sequence[str] = (),
    candidates: Sequence[float] = TOP_FRACTIONS,
) -> Selection:
    """The aggregation whose scores separate ``defect_maps`` from ``clean_maps`` best.

    Maps are at the model's input size. Ties within ``TIE`` of the best go to the
    default, then to the smaller fraction.
    """
    if not clean_maps or not defect_maps:
        raise ValueError("choosing needs clean and defective maps, "
                         f"got {len(clean_maps)} and {len(defect_maps)}")
    labels = np.r_[np.zeros(len(clean_maps), bool), np.ones(len(defect_maps), bool)]
    aurocs = {}
    for fraction in candidates:
        scores = [top_mean(m, fraction) for m in (*clean_maps, *defect_maps)]
        aurocs[float(fraction)] = roc_auc(labels, np.array(scores))
    best = max(aurocs.values())
    near = [f for f, a in aurocs.items() if a >= best - TIE]
    chosen = DEFAULT_TOP_FRACTION if DEFAULT_TOP_FRACTION in near else min(near)
    return Selection(chosen, aurocs, len(clean_maps), len(defect_maps), tuple(kinds))
