"""Tiling: tiles cover the frame and stitch back; a tiled model keeps small defects."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from camera.synthetic import PartGenerator
from inspector.fitting import FitOptions, fit
from inspector.imaging import list_images
from inspector.model import Detector
from inspector.model.tiling import split, stitch, tile_origins
from tests.conftest import SIZE, TINY


def test_tiles_cover_the_frame_and_stitch_back() -> None:
    assert tile_origins(100, 100, 10) == [0]
    origins = tile_origins(1000, 256, 32)
    assert origins[0] == 0 and origins[-1] == 1000 - 256
    assert all(b - a <= 256 - 32 for a, b in itertools.pairwise(origins))
    frame = np.arange(300 * 500, dtype=np.float32).reshape(300, 500, 1)
    tiles = split(frame, 128, 16)
    full = stitch(tiles, [t.image[:, :, 0] for t in tiles], 300, 500)
    np.testing.assert_array_equal(full, frame[:, :, 0])
    with pytest.raises(ValueError, match="overlap"):
        split(frame, 64, 64)


def test_a_tiled_model_keeps_a_small_defect_that_downscaling_would_lose(
    category: Path, tmp_path: Path
) -> None:
    """A 512 px frame of 4x4 parts: tiled at 128 px, each part is seen at full size."""
    gen = PartGenerator(seed=3, width=SIZE, height=SIZE)

    def mosaic(first: int, defect_at: int | None = None) -> np.ndarray:
        parts = [gen.render(first + i, defect="spot" if i == defect_at else None).image
                 for i in range(16)]
        return np.vstack([np.hstack(parts[r * 4 : r * 4 + 4]) for r in range(4)])

    train = tmp_path / "train"
    train.mkdir()
    for k in range(4):
        cv2.imwrite(str(train / f"{k}.png"), mosaic(16 * k))
    options = FitOptions(**{**TINY.__dict__, "tile": SIZE, "tile_overlap": 0, "holdout": 0.25})
    fit(list_images(train), tmp_path / "model", options)
    detector = Detector.open(tmp_path / "model", providers=("cpu",))
    assert detector.card.tiling is not None and detector.card.tiling.tile == SIZE
    good = detector.predict(mosaic(500))
    bad = detector.predict(mosaic(500, defect_at=5))
    assert good.anomaly_map.shape == (4 * SIZE, 4 * SIZE)
    assert bad.score > good.score
    peak_row, peak_col = np.unravel_index(np.argmax(bad.anomaly_map), bad.anomaly_map.shape)
    assert (peak_row // SIZE, peak_col // SIZE) == (1, 1)  # part 5 sits in row 1, column 1
