"""Shared by the closed-loop tests: a fresh store, rendered parts as stored frames, and a
line that writes and labels inspections the way the recorder and QA do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.imaging import list_images
from inspector.model import ModelCard, load_model
from inspector.store import Store
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


