"""A fitted model as the line runs it: one verified ONNX graph, its card, scoring frames.

- ``card``: the model card (what the model is, its threshold; its parts as ``card.X``) and
  loading a verified model
- ``runtime``: ONNX Runtime sessions, execution providers and the thread plan
- ``detector``: scoring frames into a score, an anomaly map and a verdict
- ``tiling``: splitting large frames into overlapping tiles and stitching maps back

Building a model is ``inspector.fitting``'s job; judging one is ``inspector.evaluation``'s.
"""

from inspector.model import card, tiling
from inspector.model.card import (
    CARD_FILE,
    MODEL_FILE,
    LoadedModel,
    ModelCard,
    ScoreScale,
    Threshold,
    load_model,
    now_iso,
    save_model,
    sha256_bytes,
)
from inspector.model.detector import Detector, Prediction
from inspector.model.runtime import ThreadPlan, create_session, plan_threads, usable_cores

__all__ = ["CARD_FILE", "MODEL_FILE", "Detector", "LoadedModel", "ModelCard", "Prediction",
           "ScoreScale", "ThreadPlan", "Threshold", "card", "create_session", "load_model",
           "now_iso", "plan_threads", "save_model", "sha256_bytes", "tiling", "usable_cores"]
