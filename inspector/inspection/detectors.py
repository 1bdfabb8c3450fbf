"""The detector a config runs: its execution providers and the threads each model run gets."""

from __future__ import annotations

from pathlib import Path

from inspector.config import Config
from inspector.model import Detector, LoadedModel, ThreadPlan, load_model, plan_threads


def thread_plan(config: Config) -> ThreadPlan:
    """Inspection workers and threads per model run for this config on this box."""
    return plan_threads(config.inspection.workers, config.model.intra_op_threads,
                        config.model.providers)


def load_detector(config: Config, model: str | Path | LoadedModel) -> Detector:
    """A warmed-up detector with the config's providers and the planned threads per run."""
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    detector = Detector(loaded, thread_plan(config).intra_op_threads, config.model.providers)
    detector.warm_up()
    return detector
