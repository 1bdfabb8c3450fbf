"""Shared by the closed-loop tests: a fresh store, rendered parts as stored frames, and a
line that writes and labels inspections the way the recorder and QA do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from inspector.bus import FrameSender
from inspector.config import parse_config
from inspector.imaging import list_images
from inspector.inspection import DEMO_MODEL, InspectionService
from inspector.model import Detector, ModelCard, load_model
from inspector.store import Store
from tests.conftest import make_endpoint
from tests.inspection.test_pipeline import _Collect
from tests.store.conftest import NOW, record


@pytest.fixture(scope="module")
def frames(category: Path) -> list[np.ndarray]:
    """16 different rendered parts (128 x 128), as the line would have stored them."""
    paths = list_images(category / "train/good") + list_images(category / "test/good")
    return [cv2.imread(str(p)) for p in paths]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "var") as opened:
        yield opened


@pytest.fixture(scope="module")
def card(model_dir: Path) -> ModelCard:
    """The card of a real fit (tests/conftest.py: TINY options on the rendered parts)."""
    return load_model(model_dir).card


class Line:
    """Writes inspections into a store the way the recorder does, and labels them."""

    def __init__(self, store: Store, frames: list[np.ndarray]) -> None:
        self.store = store
        self.frames = frames
        self.seq = 0

    def add(self, verdict: str, label: str | None = None, *, frame: bool = True,
            camera: str = "cam1", at: int = NOW, n: int = 1) -> list[int]:
        records = []
        for _ in range(n):
            self.seq += 1
            image = self.frames[self.seq % len(self.frames)] if frame else None
            extra = {"error": "model failed", "score": None} if verdict == "error" else {}
            records.append(record(self.seq, verdict, camera=camera, inspected_ns=at + self.seq,
                                  frame=image, **extra))
        ids = self.store.add_inspections(records)
        if label is not None:
            for inspection_id in ids:
                self.store.add_label(inspection_id, label, "qa")
        return ids




@pytest.fixture
def service(tmp_path: Path, zmq_context: zmq.Context) -> Iterator[tuple]:
    """A running InspectionService on the demo model (one worker, one camera), a sender of
    frames to it and what it sent on; ``drift_window`` 40, so drift shows within tests."""
    frames = make_endpoint("inproc", tmp_path)
    config = parse_config({
        "cameras": [{"id": "cam1", "type": "synthetic", "latency_budget_ms": 5000}],
        "bus": {"frames": frames, "results": f"inproc://results-{id(tmp_path)}"},
        "model": {"path": str(DEMO_MODEL), "intra_op_threads": 1},
        "inspection": {"workers": 1, "drift_window": 40},
        "storage": {"root": str(tmp_path / "store")}}, base_dir=tmp_path)
    collect = _Collect()
    svc = InspectionService(config, Detector.open(DEMO_MODEL, threads=1, providers=("cpu",)),
                            zmq_context, sinks=[collect])
    svc.start()
    sender = FrameSender(frames, zmq_context, hwm=1000)
    yield svc, sender, collect
    sender.close()
    svc.stop(drain_quiet_ms=50)
