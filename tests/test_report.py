"""Heat overlays, region boxes, thumbnails and the HTML evaluation report."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.evaluation.report import (
    ESCAPES_HEADING,
    FALSE_REJECTS_HEADING,
    Example,
    _auc,
    _roc,
    write_report,
)
from inspector.imaging.overlay import draw_regions, heatmap_overlay, thumbnail

HOSTILE = "<script>alert(1)</script>"


def random_image(rng: np.random.Generator, height: int = 64, width: int = 64) -> np.ndarray:
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


# --- heatmap_overlay --------------------------------------------------------------------------


def test_overlay_keeps_shape_and_dtype_and_returns_a_new_array() -> None:
    rng = np.random.default_rng(0)
    image = random_image(rng, 48, 80)
    before = image.copy()
    amap = rng.random((48, 80)).astype(np.float32)
    out = heatmap_overlay(image, amap, 0.2, 0.8)
    assert out.shape == (48, 80, 3)
    assert out.dtype == np.uint8
    assert out is not image
    np.testing.assert_array_equal(image, before)


def test_overlay_leaves_cool_pixels_untouched_and_colours_hot_ones() -> None:
    rng = np.random.default_rng(1)
    image = random_image(rng)
    amap = np.full((64, 64), 0.1, dtype=np.float32)
    amap[:, :20] = 0.3  # exactly low: untouched
    amap[40:, 40:] = 5.0  # well above high: blended at full alpha
    out = heatmap_overlay(image, amap, low=0.3, high=1.0)
    cool = np.ones((64, 64), dtype=bool)
    cool[40:, 40:] = False
    np.testing.assert_array_equal(out[cool], image[cool])
    changed = np.any(out[40:, 40:] != image[40:, 40:], axis=-1)
    assert changed.mean() > 0.95


def test_overlay_degenerate_range_changes_nothing() -> None:
    image = random_image(np.random.default_rng(2))
    out = heatmap_overlay(image, np.full((64, 64), 9.0), low=1.0, high=1.0)
    np.testing.assert_array_equal(out, image)


def test_overlay_resizes_a_smaller_map() -> None:
    image = np.full((64, 96, 3), 128, dtype=np.uint8)
    amap = np.zeros((8, 12), dtype=np.float64)
    amap[:, 6:] = 1.0  # right half hot
    out = heatmap_overlay(image, amap, 0.0, 1.0)
    assert out.shape == image.shape
    np.testing.assert_array_equal(out[:, :40], image[:, :40])
    assert np.any(out[:, 60:] != 128, axis=-1).all()


def test_overlay_accepts_grey_images() -> None:
    grey = np.full((20, 30), 77, dtype=np.uint8)
    out = heatmap_overlay(grey, np.zeros((20, 30), dtype=np.float32), 0.0, 1.0)
    assert out.shape == (20, 30, 3)
    assert (out == 77).all()


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (np.zeros((10, 10), dtype=np.float32), r"uint8 \(H, W, 3\).*float32 \(10, 10\)"),
        (np.zeros((10, 10, 4), dtype=np.uint8), r"uint8 \(H, W, 3\).*uint8 \(10, 10, 4\)"),
        (np.zeros((2, 10, 10, 3), dtype=np.uint8), r"uint8 \(H, W, 3\)"),
    ],
)
def test_overlay_rejects_bad_images(image: np.ndarray, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        heatmap_overlay(image, np.zeros((10, 10), dtype=np.float32), 0.0, 1.0)


@pytest.mark.parametrize(
    "amap",
    [np.zeros((10, 10, 3), dtype=np.float32), np.zeros(10), np.zeros((10, 10), dtype="U1")],
)
def test_overlay_rejects_bad_maps(amap: np.ndarray) -> None:
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"anomaly_map must be a float \(h, w\)"):
        heatmap_overlay(image, amap, 0.0, 1.0)


def test_overlay_rejects_bad_alpha() -> None:
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="alpha"):
        heatmap_overlay(image, np.zeros((10, 10)), 0.0, 1.0, alpha=1.5)


# --- draw_regions and thumbnail ---------------------------------------------------------------


def test_draw_regions_draws_on_a_copy_at_the_box_edge() -> None:
    image = np.zeros((100, 120, 3), dtype=np.uint8)
    out = draw_regions(image, [(10, 20, 30, 40)], color=(0, 0, 255), thickness=1)
    assert not image.any()  # original untouched
    red = (0, 0, 255)
    assert tuple(out[20, 10]) == red  # top-left corner
    assert tuple(out[20 + 39, 10 + 29]) == red  # bottom-right corner (inclusive)
    assert tuple(out[20, 25]) == red  # top edge
    assert tuple(out[40, 10]) == red  # left edge
    assert not out[40, 25].any()  # inside stays empty
    assert not out[20 + 40, 10 + 30].any()  # just outside


def test_draw_regions_default_thickness_scales_with_size() -> None:
    image = np.zeros((800, 1000, 3), dtype=np.uint8)
    out = draw_regions(image, [(100, 100, 200, 200)])  # thickness round(800 / 200) = 4
    column = out[150, 95:106, 2]
    assert 3 <= np.count_nonzero(column) <= 5


def test_draw_regions_rejects_empty_boxes() -> None:
    with pytest.raises(ValueError, match="positive"):
        draw_regions(np.zeros((10, 10, 3), dtype=np.uint8), [(1, 1, 0, 5)])


def test_thumbnail_keeps_aspect_and_never_upscales() -> None:
    wide = np.zeros((300, 1200, 3), dtype=np.uint8)
    small = thumbnail(wide, max_side=256)
    assert small.shape == (64, 256, 3)
    tall = np.zeros((1000, 500), dtype=np.uint8)
    assert thumbnail(tall, max_side=100).shape == (100, 50)
    tiny = np.zeros((40, 30, 3), dtype=np.uint8)
    same = thumbnail(tiny, max_side=256)
    assert same.shape == tiny.shape
    assert same is not tiny


# --- ROC helper -------------------------------------------------------------------------------


def test_roc_collapses_ties_and_computes_auc() -> None:
    labels = np.array([True, True, False, False])
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    fpr, tpr, thresholds = _roc(labels, scores)
    np.testing.assert_allclose(fpr, [0.0, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(thresholds[1:], [0.9, 0.5, 0.1])
    assert _auc(fpr, tpr) == pytest.approx(0.875)  # tie counted as half
    perfect = _roc(np.array([False, True]), np.array([0.0, 1.0]))
    assert _auc(perfect[0], perfect[1]) == pytest.approx(1.0)


# --- write_report -----------------------------------------------------------------------------


def synthetic_set(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    labels = np.array([False] * 10 + [True] * 10)
    scores = np.r_[rng.normal(0.3, 0.1, 10), rng.normal(0.7, 0.15, 10)]
    threshold = 0.5
    examples = []
    for index, (label, score) in enumerate(zip(labels, scores, strict=True)):
        amap = rng.random((16, 16)).astype(np.float32) * score
        name = HOSTILE if index == 0 else f"part_{index:03d}.png"
        examples.append(
            Example(
                name=name,
                label="scratch" if label else "good",
                score=float(score),
                image=random_image(rng),
                anomaly_map=amap,
            )
        )
    false_rejects = [e for e, lab in zip(examples, labels, strict=True) if not lab]
    escapes = [e for e, lab in zip(examples, labels, strict=True) if lab][:3]
    return {
        "labels": labels,
        "scores": scores,
        "threshold": threshold,
        "false_rejects": false_rejects,
        "escapes": escapes,
    }


METRICS = {
    "auroc": 0.912345,
    "f1": 0.8,
    "precision": None,
    "tp": 8,
    "fp": 1,
    "tn": 9,
    "fn": 2,
    HOSTILE: 1.5,
}


def test_write_report_writes_page_charts_and_grids(tmp_path: Path) -> None:
    data = synthetic_set()
    out_dir = tmp_path / "report" / "nested"
    index = write_report(
        out_dir,
        title=f"Eval {HOSTILE}",
        metrics=METRICS,
        score_low=0.2,
        score_high=0.9,
        **data,
    )
    assert index == out_dir / "index.html"
    for name in ("roc.png", "histogram.png", "false_rejects.png", "escapes.png"):
        image = cv2.imread(str(out_dir / name))
        assert image is not None, name
        assert image.shape[0] >= 100 and image.shape[1] >= 100, name
        assert image.std() > 5, name  # not a blank canvas

    page = index.read_text(encoding="utf-8")
    for text in (FALSE_REJECTS_HEADING, ESCAPES_HEADING, "0.9123", "0.8", "n/a", "1.5"):
        assert text in page, text
    for name in ("roc.png", "histogram.png", "false_rejects.png", "escapes.png"):
        assert f'src="{name}"' in page
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("&lt;script&gt;") >= 3  # title, metric key, example name
    assert ">8<" in page or "TP 8" in page


def test_write_report_with_no_false_rejects_says_none(tmp_path: Path) -> None:
    data = synthetic_set(1)
    data["false_rejects"] = []
    index = write_report(tmp_path, title="t", metrics={}, score_low=0.0, score_high=1.0, **data)
    page = index.read_text(encoding="utf-8")
    assert not (tmp_path / "false_rejects.png").exists()
    assert (tmp_path / "escapes.png").exists()
    section = page.split(FALSE_REJECTS_HEADING, 1)[1].split("<h2>", 1)[0]
    assert ">none<" in section
    assert "false_rejects.png" not in page


def test_write_report_handles_a_single_class(tmp_path: Path) -> None:
    index = write_report(
        tmp_path,
        title="all good",
        labels=np.zeros(5, dtype=bool),
        scores=np.linspace(0.0, 1.0, 5),
        threshold=0.5,
        metrics={"auroc": float("nan")},
        false_rejects=[],
        escapes=[],
        score_low=0.0,
        score_high=1.0,
    )
    assert cv2.imread(str(tmp_path / "roc.png")) is not None
    assert "n/a" in index.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        (np.array([True, False]), np.array([0.1, 0.2, 0.3]), "same length"),
        (np.array([], dtype=bool), np.array([]), "must not be empty"),
        (np.array([0, 2]), np.array([0.1, 0.2]), "0/1"),
        (np.array([True, False]), np.array([0.1, np.nan]), "finite"),
    ],
)
def test_write_report_rejects_bad_inputs(
    tmp_path: Path, labels: np.ndarray, scores: np.ndarray, expected: str
) -> None:
    with pytest.raises(ValueError, match=expected):
        write_report(
            tmp_path,
            title="t",
            labels=labels,
            scores=scores,
            threshold=0.5,
            metrics={},
            false_rejects=[],
            escapes=[],
            score_low=0.0,
            score_high=1.0,
        )


def test_example_rejects_a_bad_image() -> None:
    with pytest.raises(ValueError, match=r"uint8 \(H, W, 3\)"):
        Example("x", "good", 0.1, np.zeros((4, 4, 3), dtype=np.float32), np.zeros((4, 4)))
