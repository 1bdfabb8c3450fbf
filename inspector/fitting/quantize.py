"""int8 copies of fitted models: static QDQ quantization of the backbone's convolutions.

Only the backbone is quantized (per-channel weights, activations calibrated on
good images). Projection, distances and smoothing stay float32: they decide the
score, and they are a small share of the time.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from inspector.errors import ModelError
from inspector.imaging import read_image
from inspector.model import ModelCard, load_model, save_model, sha256_bytes

BACKBONE_PREFIX = "backbone/"


class _Frames(CalibrationDataReader):
    def __init__(self, paths: Sequence[Path]) -> None:
        self._frames: Iterator[np.ndarray] = (read_image(p)[None] for p in paths)

    def get_next(self) -> dict[str, np.ndarray] | None:
        frame = next(self._frames, None)
        return None if frame is None else {"image": frame}


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """The quantizer logs advice about pre-processing to the root logger on every call."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_model(model_dir: str | Path, images: Sequence[Path], out_dir: str | Path) -> ModelCard:
    """Write an int8 copy of the model in ``model_dir`` to ``out_dir``; returns its card.

    The threshold is carried over from the float model and marked as such: scores
    drift a little with int8, so run ``inspector calibrate`` on the copy.
    """
    if not images:
        raise ModelError("quantization needs calibration images (good parts)")
    model = load_model(model_dir)
    graph = onnx.load_from_string(model.onnx)
    convs = [n.name for n in graph.graph.node
             if n.op_type == "Conv" and n.name.startswith(BACKBONE_PREFIX)]
    if not convs:
        raise ModelError(f"{model_dir}: no backbone convolutions to quantize")
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(model.onnx)
        with _quiet_root_logger():
            quantize_static(
                str(source), str(target), _Frames(images),
                quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                op_types_to_quantize=["Conv"], nodes_to_quantize=convs,
                calibrate_method=CalibrationMethod.MinMax,
            )
        data = target.read_bytes()
    card = model.card
    threshold = card.threshold.model_copy(update={
        "detail": {**card.threshold.detail, "note": "carried over from the float model; "
                   "run inspector calibrate on this copy"}
    })
    quantized = card.model_copy(update={
        "name": f"{card.name}-int8",
        "threshold": threshold,
        "hyperparameters": {**card.hyperparameters, "quantization": {
            "format": "QDQ", "weights": "int8 per-channel", "activations": "uint8 MinMax",
            "nodes": len(convs), "calibration_images": len(images),
            "float_model_sha256": model.sha256,
        }},
        "onnx_sha256": sha256_bytes(data),
    })
    save_model(out_dir, quantized, data)
    return quantized
