"""The detector scoring frames with a tiny fitted model: maps, batches, bad frames, bad bytes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from camera.synthetic import PartGenerator
from inspector.errors import ImageError, ModelError
from inspector.imaging import list_images, read_image
from inspector.model import CARD_FILE, MODEL_FILE, Detector
from tests.conftest import SIZE


def test_defects_score_above_good_parts_and_the_map_peaks_on_them(
    category: Path, detector: Detector
) -> None:
    good = [detector.predict(read_image(p)).score for p in list_images(category / "test/good")]
    gen = PartGenerator(seed=3, width=SIZE, height=SIZE)
    for k, defect in enumerate(("spot", "scratch", "crack")):
        part = gen.render(300 + k, defect=defect)
        prediction = detector.predict(part.image)
        assert prediction.score > max(good), defect
        peak = np.unravel_index(np.argmax(prediction.anomaly_map), prediction.anomaly_map.shape)
        near = cv2.dilate(part.mask, np.ones((25, 25), np.uint8))  # a few patches of 8 px
        assert near[peak] > 0, f"{defect}: map peaks at {peak}, away from the defect"


def test_map_has_the_frame_size_and_batches_agree_with_single_frames(
    category: Path, detector: Detector
) -> None:
    frames = [read_image(p) for p in list_images(category / "test/good")[:3]]
    batch = detector.predict_batch(frames)
    for frame, together in zip(frames, batch, strict=True):
        alone = detector.predict(frame)
        assert together.anomaly_map.shape == frame.shape[:2]
        assert alone.score == pytest.approx(together.score, rel=1e-5)
    wide = cv2.resize(frames[0], (300, 120))
    assert detector.predict(wide).anomaly_map.shape == (120, 300)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((64, 64, 3), np.float32), "uint8"),
        (np.zeros((64, 64, 4), np.uint8), "(H, W, 3)"),
        (np.zeros((8, 64, 3), np.uint8), "smaller than"),
        (np.zeros((64,), np.uint8), "(H, W, 3)"),
        ("not an array", "numpy array"),
    ],
)
def test_bad_frames_get_clear_errors(detector: Detector, frame: object, message: str) -> None:
    with pytest.raises(ImageError, match=message if message[0] != "(" else r"\(H, W, 3\)"):
        detector.predict(frame)  # type: ignore[arg-type]


def test_greyscale_frames_are_accepted(detector: Detector) -> None:
    assert detector.predict(np.full((64, 64), 128, np.uint8)).anomaly_map.shape == (64, 64)


def test_a_model_whose_bytes_changed_is_refused(model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    copy.mkdir()
    (copy / CARD_FILE).write_bytes((model_dir / CARD_FILE).read_bytes())
    onnx_bytes = bytearray((model_dir / MODEL_FILE).read_bytes())
    onnx_bytes[-1] ^= 1
    (copy / MODEL_FILE).write_bytes(bytes(onnx_bytes))
    with pytest.raises(ModelError, match="does not match"):
        Detector.open(copy)
