"""Choosing the decision threshold from scores; the result is stored in the model card.

A part is rejected when ``score >= threshold``.
"""

from __future__ import annotations

import numpy as np

from inspector.evaluation.metrics import binary_report, f1_optimal_threshold
from inspector.model import ScoreScale, Threshold

# Fewer held-out good images than this make the quantile little more than their maximum.
FEW_GOOD_IMAGES = 20


def good_quantile_threshold(good_scores: np.ndarray, quantile: float = 0.99,
                            margin: float = 0.25) -> Threshold:
    """Good parts only: the ``quantile`` of their scores, raised by ``margin`` times the
    spread of good scores (that quantile minus their median).

    Scores are distances with a large common offset, so a margin relative to the value
    (10% of it) can exceed the whole spread of good scores and pass most defects; a margin
    relative to the spread keeps the same meaning on every product and feature scale.
    """
    scores = _finite(good_scores, "good_scores")
    base = float(np.quantile(scores, quantile))
    median = float(np.median(scores))
    # Identical good scores have no spread: keep a sliver so they still pass.
    spread = max(base - median, 1e-6 * abs(base), 1e-12)
    value = base + margin * spread
    detail = {
        "rule": "quantile + margin x (quantile - median)",
        "quantile": quantile, "margin": margin, "quantile_score": base, "median_score": median,
        "good_images": len(scores),
        "good_above_threshold": int(np.count_nonzero(scores >= value)),
    }
    if len(scores) < FEW_GOOD_IMAGES:
        detail["warning"] = (f"only {len(scores)} good images scored: the {quantile:.0%} "
                             "quantile is little more than their maximum; calibrate on more "
                             "good images (inspector calibrate)")
    return Threshold(value=value, method="good_quantile", detail=detail)


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


def threshold_effects(good: np.ndarray, defect: np.ndarray, recent: np.ndarray | None = None,
                      points: int = 50, include: tuple[float, ...] = ()) -> list[dict]:
    """What thresholds across the scores' range would do, for a curve a user moves along:
    at each, ``false_rejects`` (good scores at or above it), ``escapes`` (defect scores
    below it) and, given ``recent`` scores of unlabeled parts, their ``rejects``.
    ``points`` thresholds evenly spaced, plus the ``include`` ones (the current one)."""
    good, defect = np.sort(np.asarray(good, float)), np.sort(np.asarray(defect, float))
    recent_sorted = None if recent is None else np.sort(np.asarray(recent, float))
    every = np.concatenate([good, defect, [] if recent_sorted is None else recent_sorted])
    every = every[np.isfinite(every)]
    if every.size == 0:
        return []
    thresholds = np.unique(np.concatenate([np.linspace(every.min(), every.max(), points),
                                           np.asarray(include, float)]))
    effects = []
    for t in thresholds:
        effect = {"threshold": float(t),
                  "false_rejects": int(good.size - np.searchsorted(good, t, "left")),
                  "escapes": int(np.searchsorted(defect, t, "left"))}
        if recent_sorted is not None:
            effect["rejects"] = int(recent_sorted.size - np.searchsorted(recent_sorted, t,
                                                                         "left"))
        effects.append(effect)
    return effects
