"""Building models: from good images and a pretrained backbone to one self-contained ONNX graph.

- ``backbones``: the committed, verified ONNX backbones under ``models/backbones``
- ``graph``: the ONNX graphs (preprocessing, features, patch scoring, anomaly map, score)
- ``memory``: what a model remembers of good parts (projection, coreset bank, Gaussians)
- ``fit``: ``inspector fit``, from good images to a fitted model with its card
- ``anomalies``: synthetic defects with exact masks, to judge candidate models on good images
- ``selection``: choosing among candidates (today: the image score) on those defects
- ``quantize``: ``inspector quantize``, an int8 copy of a fitted model
- ``export``: re-exporting the backbones from PyTorch (offline, ``export`` extra only)
"""

from inspector.fitting.anomalies import DEFECT_KINDS, SyntheticDefect, make_defect, make_defects
from inspector.fitting.backbones import Backbone, load_backbone
from inspector.fitting.fit import FitOptions, FitResult, fit
from inspector.fitting.quantize import quantize_model

__all__ = ["DEFECT_KINDS", "Backbone", "FitOptions", "FitResult", "SyntheticDefect", "fit",
           "load_backbone", "make_defect", "make_defects", "quantize_model"]
