"""Shared fixtures: real ZeroMQ contexts and endpoints, the shared datasets, and a tiny fitted
model on synthetic parts (the fitting, model, evaluation and CLI tests share it)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from camera.synthetic import DEFECT_TYPES, PartGenerator
from inspector.fitting import FitOptions, fit
from inspector.imaging import list_images
from inspector.model import Detector

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASETS = REPO_ROOT.parent / "shared" / "datasets"
TRANSPORTS = ("inproc", "ipc", "tcp")

# The tiny model: a few synthetic parts, a small memory bank.
SIZE = 128  # rendered part size
TINY = FitOptions(backbone="mobilenet_v2", size=128, max_bank=512, holdout=0.2)
GOOD_TRAIN, GOOD_TEST = range(0, 10), range(100, 106)


@pytest.fixture
def zmq_context() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_endpoint(transport: str, tmp_path: Path) -> str:
    """A fresh endpoint of the given transport that nothing else uses."""
    if transport == "inproc":
        return f"inproc://test-{id(tmp_path)}"
    if transport == "ipc":
        return f"ipc://{tmp_path}/frames.sock"
    return f"tcp://127.0.0.1:{free_tcp_port()}"


@pytest.fixture(params=TRANSPORTS)
def endpoint(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_endpoint(request.param, tmp_path)


@pytest.fixture
def datasets() -> Path:
    """The shared MVTec-AD-layout datasets; tests that need them skip on a user's machine."""
    if not DATASETS.is_dir():
        pytest.skip(f"shared datasets not found at {DATASETS}")
    return DATASETS


def random_image(rng: np.random.Generator, height: int = 64, width: int = 64) -> np.ndarray:
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _write_parts(root: Path) -> Path:
    """A tiny MVTec-AD-layout category rendered by the synthetic generator."""
    gen = PartGenerator(seed=3, width=SIZE, height=SIZE)
    for folder, indices, defect in [
        ("train/good", GOOD_TRAIN, None),
        ("test/good", GOOD_TEST, None),
        *[(f"test/{d}", range(200 + 10 * k, 202 + 10 * k), d) for k, d in enumerate(DEFECT_TYPES)],
    ]:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in indices:
            part = gen.render(i, defect=defect)
            cv2.imwrite(str(root / folder / f"{i:03d}.png"), part.image)
            if defect:
                masks = root / "ground_truth" / defect
                masks.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(masks / f"{i:03d}_mask.png"), part.mask)
    return root


@pytest.fixture(scope="module")
def category(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_parts(tmp_path_factory.mktemp("parts"))


@pytest.fixture(scope="module")
def model_dir(category: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model")
    fit(list_images(category / "train/good"), out, TINY)
    return out


@pytest.fixture(scope="module")
def detector(model_dir: Path) -> Detector:
    return Detector.open(model_dir, threads=2, providers=("cpu",))
