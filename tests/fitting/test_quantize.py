"""Quantization: an int8 copy of a tiny fitted model, verified and still scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from inspector.errors import ModelError
from inspector.imaging import list_images, read_image
from inspector.model import Detector, load_model
from tests.conftest import SIZE


def test_quantize_writes_a_verified_int8_copy_that_still_scores(
    category: Path, model_dir: Path, tmp_path: Path
) -> None:
    from inspector.fitting.quantize import quantize_model

    card = quantize_model(model_dir, list_images(category / "train/good")[:4], tmp_path / "q")
    model = load_model(tmp_path / "q")  # verifies the hash
    ops = {n.op_type for n in onnx.load_from_string(model.onnx).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    quant = card.hyperparameters["quantization"]
    assert quant["float_model_sha256"] == load_model(model_dir).sha256 and quant["nodes"] > 10
    assert "calibrate" in card.threshold.detail["note"]
    prediction = Detector(model, providers=("cpu",)).predict(
        read_image(list_images(category / "test/good")[0]))
    assert np.isfinite(prediction.score) and prediction.anomaly_map.shape == (SIZE, SIZE)
    with pytest.raises(ModelError, match="calibration images"):
        quantize_model(model_dir, [], tmp_path / "none")
