"""A fitted model as the line runs it: one verified ONNX graph, its card, scoring frames.

- ``card``: the model card (what the model is, its threshold) and loading a verified model
- ``runtime``: ONNX Runtime sessions, execution providers and the thread plan
- ``detector``: scoring frames into a score, an anomaly map and a verdict
- ``tiling``: splitting large frames into overlapping tiles and stitching maps back

Building a model is ``inspector.fitting``'s job; judging one is ``inspector.evaluation``'s.
"""

from inspector.model.card import (
    CARD_FILE,
    MODEL_FILE,
    InputSpec,
    LoadedModel,
    ModelCard,
    ScoreScale,
    Threshold,
    Tiling,
    TrainingSet,
    load_model,
    now_iso,
    save_model,
    sha256_bytes,
)
from inspector.model.detector import Detector, Prediction
from inspector.model.runtime import ThreadPlan, create_session, plan_threads, usable_cores

__all__ = ["CARD_FILE", "MODEL_FILE", "Detector", "InputSpec", "LoadedModel", "ModelCard",
           "Prediction", "ScoreScale", "ThreadPlan", "Threshold", "Tiling", "TrainingSet",
           "create_session", "load_model", "now_iso", "plan_threads", "save_model",
           "sha256_bytes", "usable_cores"]
