"""Choosing the decision threshold from scores; the result is stored in the model card.

A part is rejected when ``score >= threshold``.
"""

from __future__ import annotations

import numpy as np

from inspector.evaluation.metrics import binary_report, f1_optimal_threshold
from inspector.model import ScoreScale, Threshold


def good_quantile_threshold(good_scores: np.ndarray, quantile: float = 0.99,
                            margin: float = 0.1) -> Threshold:
    """Good parts only: the ``quantile`` of their scores, raised by ``margin`` (a fraction).

    Scores are distances (zero for a perfect match), so a relative margin keeps the
    same meaning whatever the backbone's feature scale.
    """
    scores = _finite(good_scores, "good_scores")
    base = float(np.quantile(scores, quantile))
    value = base * (1.0 + margin)
    return Threshold(
        value=value,
        method="good_quantile",
        detail={
            "quantile": quantile, "margin": margin, "quantile_score": base,
            "good_images": len(scores),
            "good_above_threshold": int(np.count_nonzero(scores >= value)),
        },
    )


def f1_optimal(good_scores: np.ndarray, defect_scores: np.ndarray) -> Threshold:
    """Labeled defects too: the threshold with the best F1 on these samples, placed midway
    between the lowest score it rejects and the highest it passes, so unseen parts on
    either side get the widest margin."""
    good = _finite(good_scores, "good_scores")
    bad = _finite(defect_scores, "defect_scores")
    labels = np.concatenate([np.zeros(len(good), bool), np.ones(len(bad), bool)])
    scores = np.concatenate([good, bad])
    value, f1 = f1_optimal_threshold(labels, scores)
    below = scores[scores < value]
    if below.size:
        value = (value + below.max()) / 2
    report = binary_report(labels, scores, value)
    return Threshold(
        value=float(value),
        method="f1_optimal",
        detail={"f1": f1, "good_images": len(good), "defect_images": len(bad),
                **{k: report[k] for k in ("tp", "fp", "tn", "fn", "precision", "recall")}},
    )


def score_scale(good_scores: np.ndarray, threshold: float) -> ScoreScale:
    """Display scale: the median good score shows as 0, the threshold as 0.5."""
    low = float(np.median(_finite(good_scores, "good_scores")))
    low = min(low, threshold)
    return ScoreScale(low=low, high=threshold + (threshold - low))


def _finite(scores: np.ndarray, name: str) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return scores
