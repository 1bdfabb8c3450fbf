"""Evaluation metrics: hand-computed cases, brute-force references and the error paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inspector.evaluation import (
    binary_report,
    f1_optimal_threshold,
    pixel_auroc,
    pro_score,
    roc_auc,
)
from inspector.evaluation.metrics import roc_curve


def brute_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """P(pos > neg) + 0.5 P(tie) over every pair: the definition, O(n^2)."""
    labels = np.asarray(labels, dtype=bool)
    pos = scores[labels][:, None]
    neg = scores[~labels][None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


# Small samples with heavy ties (integer scores) and both classes present.
samples = st.integers(2, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.booleans(), min_size=n, max_size=n).filter(lambda ls: 0 < sum(ls) < len(ls)),
        st.lists(st.integers(-3, 3), min_size=n, max_size=n),
    )
)


# --- roc_auc / roc_curve ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0),  # perfect separation
        ([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9], 0.0),  # reversed
        ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.5),  # all tied
        ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75),  # 3 of 4 pairs ordered
        ([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9], 0.875),  # one tied pair counts half
        ([1, 1, 1, 0], [0.7, 0.6, 0.9, 0.6], 2.5 / 3),  # more positives than negatives
    ],
)
def test_roc_auc_hand_cases(labels: list[int], scores: list[float], expected: float) -> None:
    assert roc_auc(np.array(labels), np.array(scores)) == pytest.approx(expected, abs=1e-12)


def test_roc_curve_matches_sklearn_reference() -> None:
    # The sklearn docs example: roc_curve([1, 1, 2, 2], [.1, .4, .35, .8], pos_label=2).
    fpr, tpr, thr = roc_curve(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_array_equal(thr, [np.inf, 0.8, 0.4, 0.35, 0.1])


def test_roc_curve_collapses_ties() -> None:
    fpr, tpr, thr = roc_curve(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.2, 0.9]))
    np.testing.assert_array_equal(thr, [np.inf, 0.9, 0.5, 0.2])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1])


@settings(max_examples=40, deadline=None)
@given(samples)
def test_roc_auc_equals_trapezoid_and_pairwise(sample: tuple[list[bool], list[int]]) -> None:
    labels, scores = np.array(sample[0]), np.array(sample[1], dtype=float)
    fpr, tpr, thr = roc_curve(labels, scores)
    assert np.all(np.diff(thr) < 0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert fpr[-1] == tpr[-1] == 1.0
    auc = roc_auc(labels, scores)
    assert auc == pytest.approx(trapezoid(fpr, tpr), abs=1e-12)
    assert auc == pytest.approx(brute_auc(labels, scores), abs=1e-12)


@pytest.mark.parametrize("pos_fraction", [0.1, 0.5, 0.9])
def test_roc_auc_random_against_brute_force(pos_fraction: float) -> None:
    rng = np.random.default_rng(7)
    labels = rng.random(500) < pos_fraction
    scores = rng.normal(size=500).astype(np.float32) + labels  # informative, float32
    assert roc_auc(labels, scores) == pytest.approx(brute_auc(labels, scores), abs=1e-12)


@pytest.mark.parametrize(
    "transform",
    [lambda x: 3 * x + 7, np.exp, lambda x: x**3, lambda x: np.argsort(np.argsort(x))],
    ids=["affine", "exp", "cube", "rank"],
)
def test_roc_auc_invariant_to_monotone_transforms(transform) -> None:
    rng = np.random.default_rng(1)
    labels = rng.random(300) < 0.3
    scores = rng.normal(size=300) + 0.8 * labels
    assert roc_auc(labels, transform(scores)) == roc_auc(labels, scores)


@pytest.mark.parametrize("fn", [roc_auc, roc_curve])
@pytest.mark.parametrize(
    ("labels", "scores", "match"),
    [
        ([0, 1, 1], [0.1, 0.2], "shape"),
        ([], [], "empty"),
        ([0, 0, 0], [0.1, 0.2, 0.3], "one class"),
        ([1, 1], [0.1, 0.2], "one class"),
        ([0, 1], [0.1, np.nan], "NaN"),
        ([0, 2], [0.1, 0.2], "0/1"),
        ([0, 255], [0.1, 0.2], "0/1"),
    ],
)
def test_roc_value_errors(fn, labels: list, scores: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fn(np.array(labels), np.array(scores, dtype=float))


# --- pixel_auroc -----------------------------------------------------------------------


def test_pixel_auroc_random_is_near_half() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((20, 256, 256)) < 0.05
    maps = rng.random((20, 256, 256), dtype=np.float32)
    assert pixel_auroc(masks, maps) == pytest.approx(0.5, abs=0.01)


def test_pixel_auroc_perfect_and_shape_mismatch() -> None:
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[0, 2:4, 2:4] = True
    assert pixel_auroc(masks, masks.astype(np.float32)) == 1.0
    with pytest.raises(ValueError, match="shape"):
        pixel_auroc(masks, np.zeros((2, 8, 7), dtype=np.float32))


# --- pro_score -------------------------------------------------------------------------


def two_region_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks with a 10x10 region in image 0 and a 2x2 region in image 1; normals in [0.1, 0.5)."""
    rng = np.random.default_rng(3)
    masks = np.zeros((2, 32, 32), dtype=bool)
    masks[0, 5:15, 5:15] = True
    masks[1, 20:22, 20:22] = True
    normal = rng.uniform(0.1, 0.5, size=masks.shape).astype(np.float32)
    return masks, normal, rng.uniform(0.6, 1.0, size=masks.shape).astype(np.float32)


def test_pro_perfect_map_scores_one() -> None:
    masks, normal, high = two_region_case()
    assert pro_score(masks, np.where(masks, high, normal)) == pytest.approx(1.0, abs=1e-12)


def test_pro_inverted_map_scores_zero() -> None:
    masks, normal, _ = two_region_case()
    # Defects lower than every normal pixel: none is found before FPR reaches 1.
    assert pro_score(masks, np.where(masks, 0.0, normal)) == pytest.approx(0.0, abs=1e-12)


def test_pro_weights_regions_equally() -> None:
    masks, normal, high = two_region_case()
    maps = np.where(masks, high, normal)
    maps[1][masks[1]] = 0.0  # miss the small region entirely, find the large one
    # Pixel fraction found is 100/104; PRO averages regions: (1 + 0) / 2.
    assert pro_score(masks, maps) == pytest.approx(0.5, abs=1e-12)


def test_pro_uses_8_connectivity() -> None:
    masks = np.zeros((1, 16, 16), dtype=bool)
    masks[0, 2, 2] = masks[0, 3, 3] = True  # diagonal neighbours: one region under 8-connectivity
    masks[0, 10:12, 10:12] = True
    maps = np.full(masks.shape, 0.3)
    maps[0, 8:, :] = 0.2  # spread the normal scores a little
    maps[0, 2, 2] = 1.0
    maps[0, 3, 3] = -1.0  # missed
    maps[0, 10:12, 10:12] = 1.0
    # 8-connectivity: regions found 1/2 and 4/4 -> 0.75 (4-connectivity would give 2/3).
    assert pro_score(masks, maps) == pytest.approx(0.75, abs=1e-12)


def brute_pro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float) -> float:
    """Every distinct normal score (and -inf) as a threshold, per-region loops, same integral."""
    import cv2

    regions = []
    for mask, amap in zip(masks, maps, strict=True):
        n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        regions += [amap[lab == i] for i in range(1, n)]
    normal = maps[~masks]
    fprs, pros = [], []
    for t in np.r_[-np.inf, np.unique(normal)]:
        fprs.append(np.mean(normal > t))
        pros.append(np.mean([np.mean(r > t) for r in regions]))
    fpr, pro = np.array(fprs[::-1]), np.array(pros[::-1])
    inside = fpr < fpr_limit
    x = np.r_[fpr[inside], fpr_limit]
    y = np.r_[pro[inside], np.interp(fpr_limit, fpr, pro)]
    return trapezoid(x, y) / fpr_limit


@pytest.mark.parametrize("fpr_limit", [0.05, 0.3, 1.0])
def test_pro_matches_brute_force_exact_curve(fpr_limit: float) -> None:
    rng = np.random.default_rng(11)
    masks = np.zeros((3, 12, 12), dtype=bool)
    masks[0, 1:4, 1:6] = True
    masks[0, 8:11, 8:10] = True
    masks[2, 5:7, 3:9] = True
    # Coarse values so thresholds tie; defects shifted up so the curve is non-trivial.
    maps = np.round(rng.normal(size=masks.shape) + 1.0 * masks, 1)
    # steps large enough that every distinct normal score below the limit is a threshold.
    got = pro_score(masks, maps, fpr_limit=fpr_limit, steps=1000)
    assert got == pytest.approx(brute_pro(masks, maps, fpr_limit), abs=1e-12)
    # The default 200 steps lands close to the exact curve.
    coarse = pro_score(masks, maps, fpr_limit=fpr_limit, steps=20)
    assert coarse == pytest.approx(got, abs=0.02)


@pytest.mark.parametrize(
    ("masks", "maps", "kwargs", "match"),
    [
        (np.zeros((2, 4, 4), bool), np.zeros((2, 4, 4)), {}, "no mask"),
        (np.ones((1, 4, 4), bool), np.zeros((1, 4, 4)), {}, "every pixel"),
        (np.eye(4, dtype=bool)[None], np.zeros((1, 4, 5)), {}, "shape"),
        (np.eye(4, dtype=bool)[None], np.zeros((1, 4, 4)), {"fpr_limit": 0.0}, "fpr_limit"),
        (np.eye(4, dtype=bool)[None], np.zeros((1, 4, 4)), {"steps": 1}, "steps"),
    ],
)
def test_pro_value_errors(masks: np.ndarray, maps: np.ndarray, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pro_score(masks, maps, **kwargs)


# --- f1_optimal_threshold / binary_report ----------------------------------------------


def test_f1_optimal_threshold_hand_case() -> None:
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.9])
    # At t=0.3: tp=3, fp=1, fn=0 -> F1 = 6/7, better than every other cut.
    t, f1 = f1_optimal_threshold(labels, scores)
    assert t == 0.3
    assert f1 == pytest.approx(6 / 7)
    assert binary_report(labels, scores, t)["f1"] == pytest.approx(f1)


def test_f1_optimal_threshold_is_a_score_and_reproduces_f1() -> None:
    rng = np.random.default_rng(5)
    labels = rng.random(400) < 0.2
    scores = (rng.normal(size=400) + 1.5 * labels).astype(np.float32)
    t, f1 = f1_optimal_threshold(labels, scores)
    assert t in scores
    assert binary_report(labels, scores, t)["f1"] == pytest.approx(f1, abs=1e-12)
    best = max(binary_report(labels, scores, float(s))["f1"] for s in np.unique(scores))
    assert f1 == pytest.approx(best, abs=1e-12)


def test_f1_optimal_threshold_without_positives() -> None:
    with pytest.raises(ValueError, match="no positive"):
        f1_optimal_threshold(np.zeros(4, bool), np.arange(4.0))


def test_binary_report_counts_and_json() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.6, 0.2, 0.6, 0.3, 0.1, 0.0])
    report = binary_report(labels, scores, 0.6)  # >= is defective, so 0.6 counts
    assert report == {
        "tp": 2,
        "fp": 1,
        "tn": 3,
        "fn": 1,
        "precision": pytest.approx(2 / 3),
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(2 / 3),
        "accuracy": pytest.approx(5 / 7),
    }
    assert all(type(report[k]) is int for k in ("tp", "fp", "tn", "fn"))
    assert all(type(report[k]) is float for k in ("precision", "recall", "f1", "accuracy"))
    assert json.loads(json.dumps(report))["tp"] == 2


def test_binary_report_undefined_ratios_are_zero() -> None:
    report = binary_report(np.zeros(3, bool), np.array([0.1, 0.2, 0.3]), 1.0)
    assert report["precision"] == report["recall"] == report["f1"] == 0.0
    assert report["accuracy"] == 1.0
    assert "NaN" not in json.dumps(report)
    with pytest.raises(ValueError, match="shape"):
        binary_report(np.zeros(3, bool), np.zeros(2), 0.5)
