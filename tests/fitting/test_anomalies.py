"""Synthetic defects: exact masks, visible changes, sizes in model pixels, same seed same bytes."""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camera.synthetic import PartGenerator
from inspector.fitting.anomalies import (
    DEFECT_KINDS,
    MIN_CHANGE,
    SyntheticDefect,
    make_defect,
    make_defects,
)


def surface(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A brushed-metal-like uint8 surface: smoothed noise on a light gradient."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    noise = cv2.GaussianBlur(rng.normal(0, 25, (h, w)).astype(np.float32), (0, 0), 1.5, sigmaY=4)
    grey = np.clip(110 + noise + np.linspace(-30, 30, w)[None, :], 0, 255).astype(np.uint8)
    return grey if len(shape) == 2 else np.repeat(grey[..., None], shape[2], axis=2)


def part(size: int = 256, grey: bool = False) -> np.ndarray:
    image = PartGenerator(seed=3, width=size, height=size).render(0, defect=None).image
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if grey else image


IMAGES = {
    "part-colour": lambda: part(),
    "part-grey": lambda: part(grey=True),
    "tall-grey-1024x400": lambda: surface((1024, 400)),
    "wide-colour-400x1024": lambda: surface((400, 1024, 3), 1),
    "wide-colour-103x400": lambda: surface((103, 400, 3), 2),
    "grey-1-channel-64x48": lambda: surface((64, 48, 1), 3),
    "smallest-32x32": lambda: surface((32, 32), 4),
    "flat-black": lambda: np.zeros((64, 96, 3), np.uint8),
    "flat-white": lambda: np.full((96, 64), 255, np.uint8),
    "flat-mid-grey": lambda: np.full((80, 80), 128, np.uint8),
}


def change(defect: SyntheticDefect, image: np.ndarray) -> np.ndarray:
    """|change| per pixel, averaged over channels, as (H, W)."""
    diff = np.abs(defect.image.astype(np.int16) - image.astype(np.int16))
    return diff.reshape(*image.shape[:2], -1).mean(axis=2)


def check_invariants(defect: SyntheticDefect, image: np.ndarray, kind: str | None) -> None:
    assert defect.image.shape == image.shape and defect.image.dtype == np.uint8
    assert defect.mask.dtype == bool and defect.mask.shape == image.shape[:2]
    assert defect.mask.any(), "empty mask"
    assert np.array_equal(defect.image[~defect.mask], image[~defect.mask]), "changed outside"
    assert change(defect, image)[defect.mask].mean() >= MIN_CHANGE, "invisible defect"
    assert defect.kind == kind if kind is not None else defect.kind in DEFECT_KINDS
    assert defect.area_fraction == pytest.approx(defect.mask.mean())


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_every_kind_changes_visibly_and_only_inside_its_mask(kind: str, name: str) -> None:
    image = IMAGES[name]()
    before = image.copy()
    for seed in range(6):
        defect = make_defect(image, np.random.default_rng(seed), kind)
        check_invariants(defect, image, kind)
    assert np.array_equal(image, before), "the input was modified"


def test_kind_none_draws_every_kind() -> None:
    image = part()
    kinds = {make_defect(image, np.random.default_rng(s)).kind for s in range(60)}
    assert kinds == set(DEFECT_KINDS)


def test_sizes_span_a_few_model_pixels_to_a_sizeable_region() -> None:
    image, areas = surface((256, 256)), {kind: [] for kind in DEFECT_KINDS}
    for seed in range(80):
        for kind in DEFECT_KINDS:
            defect = make_defect(image, np.random.default_rng(seed), kind, model_side=256)
            areas[kind].append(defect.mask.sum())
    assert min(areas["blob"]) <= 25  # a spot about 4 model pixels across
    largest = max(max(a) for a in areas.values()) / image.size
    assert 0.01 <= largest < 0.15  # large regions exist, none swamps the frame
    for kind in ("patch", "texture", "shift"):
        assert max(areas[kind]) > 4 * min(areas[kind])  # each kind varies in size
    widths = [2 * cv2.distanceTransform(make_defect(image, np.random.default_rng(s), "scratch")
                                        .mask.astype(np.uint8), cv2.DIST_L2, 5).max()
              for s in range(40)]
    assert max(widths) <= 8  # 1-3 model pixels plus the anti-aliased fringe


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_sizes_are_in_model_pixels_whatever_the_frame_size(kind: str) -> None:
    small = surface((256, 256), 5)
    large = cv2.resize(small, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    ratios = []
    for seed in range(10):
        a = make_defect(small, np.random.default_rng(seed), kind, model_side=256)
        b = make_defect(large, np.random.default_rng(seed), kind, model_side=256)
        ratios.append(b.mask.sum() / a.mask.sum())
    # 16x the native pixels (4x per side); less for thin shapes, which round up on the small frame
    assert 8 < np.median(ratios) < 20


def test_a_smaller_model_side_means_larger_defects_on_the_same_frame() -> None:
    image = surface((512, 512), 6)

    def mean_area(side: int) -> float:
        return np.mean([make_defect(image, np.random.default_rng(s), "blob", model_side=side)
                        .mask.sum() for s in range(30)])

    assert mean_area(128) > 8 * mean_area(512)  # 4x per side at the model's scale


def test_a_stretched_frame_gets_stretched_defects() -> None:
    """The model squashes a 1024x256 (HxW) frame to a square: a round blob must be tall."""
    image = surface((1024, 256), 7)
    spans = []
    for seed in range(30):
        ys, xs = np.nonzero(make_defect(image, np.random.default_rng(seed), "blob").mask)
        spans.append((np.ptp(ys) + 1) / (np.ptp(xs) + 1))
    assert np.median(spans) > 2


def test_same_seed_same_bytes_and_another_seed_differs() -> None:
    images = [part(), surface((256, 256, 3), 8), surface((300, 200, 3), 9)]
    first, again = make_defects(images, 11, per_image=3), make_defects(images, 11, per_image=3)
    other = make_defects(images, 12, per_image=3)
    for a, b in zip(first, again, strict=True):
        assert a.kind == b.kind and a.image.tobytes() == b.image.tobytes()
        assert a.mask.tobytes() == b.mask.tobytes()
    assert any(a.image.tobytes() != c.image.tobytes() for a, c in zip(first, other, strict=True))


def test_make_defects_cycles_through_the_kinds() -> None:
    images = [surface((64, 64), s) for s in range(4)]
    defects = make_defects(images, 0, per_image=5)
    assert [d.kind for d in defects] == list(DEFECT_KINDS) * 4
    for i, image in enumerate(images):
        for defect in defects[5 * i:5 * i + 5]:
            check_invariants(defect, image, defect.kind)
    subset = make_defects(images, 0, kinds=("scratch", "blob"))
    assert Counter(d.kind for d in subset) == {"scratch": 2, "blob": 2}


def test_patch_comes_from_the_donor_resized_and_converted() -> None:
    image = np.full((128, 128, 3), 40, np.uint8)
    donor = np.full((300, 90), 220, np.uint8)  # grey, another size
    for seed in range(5):
        defect = make_defect(image, np.random.default_rng(seed), "patch", donor=donor)
        check_invariants(defect, image, "patch")
        assert defect.image[defect.mask].mean() > 100  # pulled towards the bright donor


def test_patch_without_donor_comes_from_elsewhere_in_the_image() -> None:
    image = np.zeros((128, 128), np.uint8)
    image[:, 64:] = 200  # a patch from the other half shows
    for seed in range(5):
        check_invariants(make_defect(image, np.random.default_rng(seed), "patch"), image, "patch")


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_a_grey_frame_stored_as_bgr_gets_grey_defects(kind: str) -> None:
    image = part(grey=True)
    bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    for seed in range(4):
        out = make_defect(bgr, np.random.default_rng(seed), kind, donor=part(grey=True)).image
        assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(32, 300),
    width=st.integers(32, 300),
    channels=st.sampled_from([0, 1, 3]),
    kind=st.sampled_from((*DEFECT_KINDS, None)),
    model_side=st.sampled_from([32, 128, 256, 1024]),
    seed=st.integers(0, 2**32 - 1),
    flat=st.none() | st.integers(0, 255),
)
def test_invariants_hold_for_any_frame(height: int, width: int, channels: int,
                                       kind: str | None, model_side: int, seed: int,
                                       flat: int | None) -> None:
    shape = (height, width) if channels == 0 else (height, width, channels)
    image = surface(shape, seed) if flat is None else np.full(shape, flat, np.uint8)
    before = image.copy()
    defect = make_defect(image, np.random.default_rng(seed), kind, model_side=model_side)
    check_invariants(defect, image, kind)
    assert np.array_equal(image, before)
    again = make_defect(image, np.random.default_rng(seed), kind, model_side=model_side)
    assert again.image.tobytes() == defect.image.tobytes()


GOOD = np.zeros((64, 64), np.uint8)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_defect(GOOD.astype(np.float32), np.random.default_rng()), "uint8"),
        (lambda: make_defect(GOOD.astype(np.uint16), np.random.default_rng()), "uint8"),
        (lambda: make_defect(GOOD.tolist(), np.random.default_rng()), "numpy array"),
        (lambda: make_defect(np.zeros((31, 64), np.uint8), np.random.default_rng()), ">= 32"),
        (lambda: make_defect(np.zeros((64, 20, 3), np.uint8), np.random.default_rng()), ">= 32"),
        (lambda: make_defect(np.zeros((64, 64, 4), np.uint8), np.random.default_rng()), "BGR"),
        (lambda: make_defect(np.zeros(4096, np.uint8), np.random.default_rng()), "shape"),
        (lambda: make_defect(GOOD, np.random.default_rng(), "crack"), "unknown defect kind"),
        (lambda: make_defect(GOOD, 0), "Generator"),
        (lambda: make_defect(GOOD, np.random.default_rng(), model_side=8), "model_side"),
        (lambda: make_defect(GOOD, np.random.default_rng(), "patch",
                             donor=GOOD.astype(np.float64)), "donor must be uint8"),
        (lambda: make_defects([], 0), "empty"),
        (lambda: make_defects([GOOD], -1), "seed"),
        (lambda: make_defects([GOOD], 0, per_image=0), "per_image"),
        (lambda: make_defects([GOOD], 0, kinds=("patch", "dent")), "kinds"),
        (lambda: make_defects([GOOD], 0, kinds=()), "kinds"),
    ],
)
def test_bad_input_is_a_clear_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
