"""The synthetic part generator: deterministic, truthful masks, visible defects."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from camera.synthetic import DEFECT_TYPES, RANDOM, PartGenerator, write_dataset
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def generator() -> PartGenerator:
    return PartGenerator(seed=3, width=256, height=256, defect_rate=0.5)


def test_same_seed_and_index_give_the_same_part_in_any_order(generator: PartGenerator) -> None:
    forward = [generator.render(i) for i in range(6)]
    again = PartGenerator(seed=3, width=256, height=256, defect_rate=0.5)
    backward = [again.render(i) for i in reversed(range(6))][::-1]
    for a, b in zip(forward, backward, strict=True):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
        assert a.defect == b.defect
    other_seed = PartGenerator(seed=4, width=256, height=256).render(0)
    assert not np.array_equal(other_seed.image, forward[0].image)


@pytest.mark.parametrize(("width", "height"), [(64, 64), (320, 200), (200, 320), (2448, 2048)])
def test_any_size_from_64_px_to_5_megapixels(width: int, height: int) -> None:
    part = PartGenerator(width=width, height=height).render(0, "spot")
    assert part.image.shape == (height, width, 3) and part.image.dtype == np.uint8
    assert part.mask.shape == (height, width) and part.mask.dtype == np.uint8
    assert 0 < (part.mask > 0).sum() < 0.05 * width * height


def test_good_parts_have_empty_masks(generator: PartGenerator) -> None:
    part = generator.render(1, None)
    assert part.defect is None and not part.mask.any()
    assert 60 < part.image.mean() < 200  # a lit part, neither black nor blown out


@pytest.mark.parametrize("defect", DEFECT_TYPES)
def test_each_defect_is_drawn_exactly_where_its_mask_says(
    generator: PartGenerator, defect: str
) -> None:
    for index in range(5):
        good = generator.render(index, None)
        bad = generator.render(index, defect)
        assert bad.defect == defect
        inside = bad.mask > 0
        area = inside.mean()
        assert 0.0003 < area < 0.03, (defect, area)
        assert set(np.unique(bad.mask)) == {0, 255}
        change = np.abs(bad.image.astype(int) - good.image.astype(int)).mean(axis=2)
        # the pose and noise stay those of the good part: outside the mask nothing changed
        assert change[~inside].max() == 0
        assert change[inside].mean() > 15, (defect, change[inside].mean())


def test_defects_lie_on_the_part(generator: PartGenerator) -> None:
    for index in range(20):
        part = generator.render(index, DEFECT_TYPES[index % len(DEFECT_TYPES)])
        ys, xs = np.nonzero(part.mask)
        radius = np.hypot(xs - 128, ys - 128)
        assert radius.max() < 0.45 * 256  # inside the disc (radius 0.42 of the size, jittered)


def test_defect_rate_is_honoured() -> None:
    generator = PartGenerator(seed=1, defect_rate=0.3, width=64, height=64)
    defects = [generator.render(i).defect for i in range(300)]
    rate = sum(d is not None for d in defects) / len(defects)
    assert 0.2 < rate < 0.4
    assert {d for d in defects if d} == set(DEFECT_TYPES)
    assert generator.render(0, RANDOM).defect == defects[0]
    only = PartGenerator(seed=1, defect_rate=1.0, defect_types=["crack"], width=64, height=64)
    assert {only.render(i).defect for i in range(20)} == {"crack"}


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"width": 32}, "width and height must be >= 64"),
        ({"defect_rate": 1.5}, "defect_rate must be in [0, 1], got 1.5"),
        ({"defect_types": ["rust"]}, "non-empty subset of"),
        ({"defect_types": []}, "non-empty subset of"),
    ],
)
def test_bad_arguments_say_what_was_expected(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        PartGenerator(**kwargs)
    assert fragment in str(caught.value)


def test_bad_render_arguments(generator: PartGenerator) -> None:
    with pytest.raises(ValueError, match="one of"):
        generator.render(0, "rust")
    with pytest.raises(ValueError, match="index must be >= 0"):
        generator.render(-1)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.png"))
    }


def test_write_dataset_layout_and_determinism(tmp_path: Path) -> None:
    counts = write_dataset(tmp_path / "a", seed=5, size=64, train_good=3, test_good=2, per_defect=1)
    assert counts == {"train/good": 3, "test/good": 2, **{f"test/{d}": 1 for d in DEFECT_TYPES}}
    digest = _tree_digest(tmp_path / "a")
    assert len(digest) == 3 + 2 + 2 * len(DEFECT_TYPES)  # images plus one mask per defect
    assert "ground_truth/crack/000_mask.png" in digest
    write_dataset(tmp_path / "b", seed=5, size=64, train_good=3, test_good=2, per_defect=1)
    assert _tree_digest(tmp_path / "b") == digest


def test_committed_sample_images_are_what_make_samples_writes(tmp_path: Path) -> None:
    write_dataset(tmp_path / "samples", seed=0)
    fresh, committed = tmp_path / "samples", REPO_ROOT / "sample_images"
    names = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*.png"))
    assert names == sorted(p.relative_to(committed).as_posix() for p in committed.rglob("*.png"))
    # Pixels, not bytes: another zlib may compress the same image differently, and OpenCV's
    # SIMD paths differ by CPU, so a rare pixel may round one level the other way.
    for name in names:
        a = cv2.imread(str(fresh / name), cv2.IMREAD_UNCHANGED).astype(np.int16)
        b = cv2.imread(str(committed / name), cv2.IMREAD_UNCHANGED).astype(np.int16)
        assert a.shape == b.shape, name
        diff = np.abs(a - b)
        assert diff.max() <= 1 and np.count_nonzero(diff) <= 16, name
