"""Evaluation metrics for unsupervised anomaly detection.

Image level: ROC curve, AUROC, the F1-optimal threshold and a confusion-matrix report.
Pixel level: pixel AUROC and PRO (per-region overlap, Bergmann et al., MVTec AD).

Convention everywhere: label True (or 1) means defective, a higher score means more
anomalous, and the decision rule is ``score >= threshold`` -> defective. Pure numpy;
OpenCV only labels connected defect regions. Inputs are validated and bad ones raise
``ValueError`` (NaN scores included: they have no place in an ordering).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "binary_report",
    "f1_optimal_threshold",
    "pixel_auroc",
    "pro_score",
    "roc_auc",
    "roc_curve",
]

# Queries per searchsorted call in roc_auc: bounds the int64 temporaries to ~64 MiB
# however many pixels are scored.
_CHUNK = 1 << 22


def _as_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """Labels as a bool array; only bool or 0/1 values are accepted (0/255 masks are refused)."""
    arr = np.asarray(labels)
    if arr.dtype == np.bool_:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} must be bool or 0/1 numbers, got dtype {arr.dtype}")
    if np.any((arr != 0) & (arr != 1)):
        raise ValueError(f"{name} must contain only 0/1 (or bool); use e.g. mask > 0 first")
    return arr.astype(bool)


def _as_scores(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    """Scores as a float array; float32 stays float32 so 50M-pixel maps are not doubled."""
    arr = np.asarray(scores)
    if not np.issubdtype(arr.dtype, np.floating):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
            raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
    if np.isnan(arr).any():
        raise ValueError(f"{name} contain NaN")
    return arr


def _validate(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat bool labels and float scores of equal, non-zero length."""
    y = _as_labels(labels)
    s = _as_scores(scores)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in shape: {y.shape} vs {s.shape}")
    if y.size == 0:
        raise ValueError("labels and scores are empty")
    return y.ravel(), s.ravel()


def _require_both_classes(y: np.ndarray) -> None:
    n_pos = int(np.count_nonzero(y))
    if n_pos == 0 or n_pos == y.size:
        only = "positive (defective)" if n_pos else "negative (good)"
        raise ValueError(f"only one class present ({only}); ROC/AUC is undefined")


def _counts_at_distinct_scores(
    y: np.ndarray, s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tps, fps, thresholds) for ``score >= t`` at each distinct score, t descending."""
    order = np.argsort(s, kind="stable")[::-1]
    s_sorted = s[order]
    tps_all = np.cumsum(y[order], dtype=np.int64)
    # The last index of each run of tied scores: ties enter the positive set together.
    ends = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), s_sorted.size - 1]
    tps = tps_all[ends]
    fps = ends + 1 - tps
    return tps, fps, s_sorted[ends].astype(np.float64)


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve as (fpr, tpr, thresholds), thresholds descending from +inf.

    One point per distinct score (ties collapsed), plus the (0, 0) point at +inf:
    the same as sklearn's ``roc_curve(..., drop_intermediate=False)``.
    """
    y, s = _validate(labels, scores)
    _require_both_classes(y)
    tps, fps, thresholds = _counts_at_distinct_scores(y, s)
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    return fpr, tpr, np.r_[np.inf, thresholds]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: P(score_pos > score_neg) + 0.5 * P(tie).

    This is the Mann-Whitney U with average ranks for ties, computed by sorting one
    class and binary-searching the other into it: O(n log n), no rank array, no n x n.
    """
    y, s = _validate(labels, scores)
    _require_both_classes(y)
    pos = s[y]
    neg = s[~y]
    # Sort the larger class and search the smaller one into it: fewer int64 temporaries.
    flip = pos.size > neg.size
    base, queries = (pos, neg) if flip else (neg, pos)
    base.sort()
    # For each query: (#base strictly below) + (#base <= it) = 2*(below) + ties.
    twice_below = 0
    for start in range(0, queries.size, _CHUNK):
        q = queries[start : start + _CHUNK]
        twice_below += int(np.searchsorted(base, q, "left").sum(dtype=np.int64))
        twice_below += int(np.searchsorted(base, q, "right").sum(dtype=np.int64))
    pairs = pos.size * neg.size
    # Python ints: exact for any realistic pixel count before the one final division.
    twice_u = 2 * pairs - twice_below if flip else twice_below
    return twice_u / (2 * pairs)


def pixel_auroc(masks: np.ndarray, maps: np.ndarray) -> float:
    """AUROC over every pixel of every image: masks bool (N, H, W), maps float (N, H, W)."""
    masks = np.asarray(masks)
    maps = np.asarray(maps)
    if masks.shape != maps.shape:
        raise ValueError(f"masks and maps differ in shape: {masks.shape} vs {maps.shape}")
    # ravel is a view for contiguous input; roc_auc copies each class once (n scores total).
    return roc_auc(masks.ravel(), maps.ravel())


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    # np.trapezoid is numpy>=2 only and np.trapz is gone there; the formula is one line.
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1])) / 2.0)


def pro_score(
    masks: np.ndarray, maps: np.ndarray, fpr_limit: float = 0.3, steps: int = 200
) -> float:
    """Normalised area under the PRO-vs-FPR curve up to ``fpr_limit`` (MVTec AD).

    At a threshold t a pixel is positive when ``map > t``. PRO(t) is the mean, over
    every 8-connected defect region of every mask, of the fraction of that region's
    pixels that are positive, so a small region counts as much as a large one.
    FPR(t) is the fraction of all defect-free pixels that are positive. The curve is
    integrated (trapezoid) from FPR 0 to ``fpr_limit``, the end point interpolated at
    exactly ``fpr_limit``, and divided by ``fpr_limit``: a perfect map scores 1.0.

    Thresholds are taken from the sorted defect-free scores at ``steps`` evenly spaced
    FPR targets in [0, fpr_limit], so the integrated range is sampled evenly whatever
    the score distribution; every FPR is then computed exactly from counts.
    """
    masks = np.asarray(masks)
    maps = np.asarray(maps)
    if masks.shape != maps.shape:
        raise ValueError(f"masks and maps differ in shape: {masks.shape} vs {maps.shape}")
    if masks.ndim == 2:
        masks, maps = masks[None], maps[None]
    if masks.ndim != 3:
        raise ValueError(f"masks and maps must be (N, H, W), got shape {masks.shape}")
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    masks = _as_labels(masks, "masks")
    maps = _as_scores(maps, "maps")
    if not masks.any():
        raise ValueError("no mask has any defect pixel; PRO is undefined")

    normal = maps[~masks]
    if normal.size == 0:
        raise ValueError("every pixel is a defect pixel; the FPR of PRO is undefined")
    normal.sort()
    n_normal = normal.size

    # Thresholds: for each target count k of false positives, the highest threshold
    # with at least k normal pixels above it (the tightest point at or past the target).
    ks = np.unique(np.ceil(np.linspace(0.0, fpr_limit * n_normal, steps)).astype(np.int64))
    ks = ks[(ks >= 1) & (ks <= n_normal)]
    # #normal > t >= k  <=>  t < normal[n - k]; the largest normal value below that.
    below = np.searchsorted(normal, normal[n_normal - ks], "left") - 1
    thresholds = np.where(below >= 0, normal[np.maximum(below, 0)], -np.inf)
    # k = 0: the highest normal score, so the curve starts at FPR exactly 0.
    thresholds = np.unique(np.r_[thresholds, normal[-1]])  # ascending
    fpr = (n_normal - np.searchsorted(normal, thresholds, "right")) / n_normal
    del normal

    # Defect pixels with a global region id (regions never span images).
    region_scores: list[np.ndarray] = []
    region_ids: list[np.ndarray] = []
    n_regions = 0
    for mask, amap in zip(masks, maps, strict=True):
        if not mask.any():
            continue
        n_labels, labelled = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        region_scores.append(amap[mask])
        region_ids.append(labelled[mask].astype(np.int64) - 1 + n_regions)
        n_regions += n_labels - 1
    scores = np.concatenate(region_scores)
    ids = np.concatenate(region_ids)

    # One histogram per region over threshold bins instead of a threshold x image loop:
    # bin b = number of thresholds strictly below the score = thresholds it exceeds.
    n_t = thresholds.size
    bins = np.searchsorted(thresholds, scores, "left")
    hist = np.bincount(ids * (n_t + 1) + bins, minlength=n_regions * (n_t + 1))
    hist = hist.reshape(n_regions, n_t + 1)
    # Pixels above thresholds[j] are those in bins j+1.. : a reversed cumulative sum.
    above = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]
    sizes = hist.sum(axis=1, keepdims=True)
    pro = (above / sizes).mean(axis=0)

    # Thresholds ascend so FPR descends; distinct normal values give distinct FPRs.
    fpr, pro = fpr[::-1], pro[::-1]
    pro_at_limit = float(np.interp(fpr_limit, fpr, pro))
    inside = fpr < fpr_limit
    x = np.r_[fpr[inside], fpr_limit]
    y = np.r_[pro[inside], pro_at_limit]
    return _trapezoid(x, y) / fpr_limit


def f1_optimal_threshold(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 for the rule ``score >= threshold``.

    The threshold is one of the scores (the lowest score still called defective), so
    applying the rule to the same data reproduces the F1 exactly. Among equal F1s the
    highest threshold wins (fewest rejects).
    """
    y, s = _validate(labels, scores)
    n_pos = int(np.count_nonzero(y))
    if n_pos == 0:
        raise ValueError("no positive (defective) labels; F1 is undefined")
    tps, fps, thresholds = _counts_at_distinct_scores(y, s)
    # F1 = 2TP / (2TP + FP + FN) = 2TP / (TP + FP + P).
    f1 = 2.0 * tps / (tps + fps + n_pos)
    best = int(np.argmax(f1))
    # Return the score itself in the caller's precision, not a rounded float64 copy.
    return float(s.dtype.type(thresholds[best])), float(f1[best])


def binary_report(
    labels: np.ndarray, scores: np.ndarray, threshold: float
) -> dict[str, float | int]:
    """Confusion counts and rates for ``score >= threshold`` -> defective.

    Undefined ratios (e.g. precision with nothing predicted defective) are 0.0, and
    every value is a plain Python int or float so the dict is JSON-serialisable.
    """
    y, s = _validate(labels, scores)
    if np.isnan(threshold):
        raise ValueError("threshold is NaN")
    pred = s >= threshold
    tp = int(np.count_nonzero(pred & y))
    fp = int(np.count_nonzero(pred & ~y))
    fn = int(np.count_nonzero(~pred & y))
    tn = int(y.size - tp - fp - fn)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "accuracy": float((tp + tn) / y.size),
    }
