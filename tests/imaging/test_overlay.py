"""Heat overlays, region boxes and thumbnails."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.imaging import draw_regions, heatmap_overlay, thumbnail
from tests.conftest import random_image

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
