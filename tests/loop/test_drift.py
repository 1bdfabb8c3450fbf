"""Score drift: a camera whose typical part scores away from the fit-time median raises an
alarm, which clears by itself when the scores come back."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from camera.synthetic import PartGenerator
from inspector.bus import FrameSender
from inspector.inspection import DEMO_MODEL, InspectionService
from inspector.loop import DriftMonitor
from inspector.model import Detector, ModelCard, ScoreScale, load_model


@pytest.fixture(scope="module")
def card(model_dir: Path) -> ModelCard:
    """A real card with a round scale: typical good part 1.0, threshold 2.0."""
    card = load_model(model_dir).card
    return card.model_copy(update={
        "score_scale": ScoreScale(low=1.0, high=3.0),
        "threshold": card.threshold.model_copy(update={"value": 2.0})})


def feed(monitor: DriftMonitor, card: ModelCard, median: float, n: int,
         camera: str = "cam1") -> list[str]:
    rng = np.random.default_rng(0)
    for score in median + rng.normal(0, 0.05, n):
        monitor.observe(camera, card.onnx_sha256, float(score))
    return [d.camera for d in monitor.check(card)]


def test_drift_is_raised_past_the_limit_and_clears_with_hysteresis(card: ModelCard) -> None:
    monitor = DriftMonitor(window=40, limit=0.5)
    assert feed(monitor, card, 1.0, 40) == []
    assert feed(monitor, card, 1.4, 40) == []  # 0.4 of the way to the threshold: not yet
    assert feed(monitor, card, 1.6, 19) == []  # the median has not moved past half the window
    assert feed(monitor, card, 1.6, 2) == ["cam1"]  # 21 of 40 parts: within window/2 + 1
    raised = monitor.check(card)[0]
    assert "score drift on cam1" in raised.message() and "up" in raised.message()
    assert feed(monitor, card, 1.4, 40) == ["cam1"]  # between clear (0.25) and raise (0.5)
    assert feed(monitor, card, 1.1, 40) == []  # back: clears by itself
    assert feed(monitor, card, 0.4, 40) == ["cam1"]  # down counts too (e.g. brighter light)
    assert "down" in monitor.check(card)[0].message()


def test_a_few_defects_do_not_move_the_median(card: ModelCard) -> None:
    monitor = DriftMonitor(window=40, limit=0.5)
    feed(monitor, card, 1.0, 30)
    for _ in range(8):  # 20% defects far above the threshold
        monitor.observe("cam1", card.onnx_sha256, 9.0)
    assert monitor.check(card) == []


def test_too_few_parts_say_nothing_and_a_new_model_starts_afresh(card: ModelCard) -> None:
    monitor = DriftMonitor(window=40, limit=0.5)
    assert feed(monitor, card, 5.0, 9) == []  # under a quarter of the window
    assert feed(monitor, card, 5.0, 1) == ["cam1"]
    other = card.model_copy(update={"onnx_sha256": "0" * 64})
    monitor.observe("cam1", other.onnx_sha256, 1.0)  # promoted: its own window
    assert monitor.check(card) == [] and monitor.check(other) == []


def test_cameras_are_bounded(card: ModelCard) -> None:
    monitor = DriftMonitor(window=8, limit=0.5, max_cameras=3)
    for n in range(10):
        feed(monitor, card, 5.0, 8, camera=f"cam{n}")
    assert [d.camera for d in monitor.check(card)] == ["cam7", "cam8", "cam9"]
    with pytest.raises(ValueError):
        DriftMonitor(window=2)


def test_a_camera_whose_images_darken_raises_the_alarm_and_it_clears(service: tuple) -> None:
    svc, sender, collect = service
    parts = PartGenerator(seed=7)
    sent = 0

    def send(n: int, brightness: float) -> list[str]:
        nonlocal sent
        for _ in range(n):
            image = (parts.render(sent).image * brightness).astype(np.uint8)
            sender.send(image, "cam1", sent, time.time_ns())
            sent += 1
        collect.wait(sent)
        return [a for a in _drift_messages(svc) if a.startswith("score drift")]

    assert send(40, 1.0) == []
    assert send(21, 0.6) != []  # within the documented window/2 + 1 parts
    assert "score drift on cam1" in _drift_messages(svc)[-1]
    assert send(40, 1.0) == []  # the light is back: cleared without anyone acting


def _drift_messages(svc: InspectionService) -> list[str]:
    return [drift.message() for drift in svc.drift.check(svc.detector.card)]


def test_a_camera_can_be_left_out_of_the_drift_alarm(tmp_path: Path, zmq_context) -> None:
    from inspector.inspection import demo_config

    config = demo_config(tmp_path / "store")
    replay = next(c for c in config.cameras if c.id == "replay")
    assert replay.drift_alarm is False  # a replayed test set is mostly defects
    svc = InspectionService(config, Detector.open(DEMO_MODEL, threads=1, providers=("cpu",)),
                            zmq_context)
    sender = FrameSender(config.bus.frames, zmq_context, hwm=100)
    svc.start()
    try:
        dark = (PartGenerator(seed=7).render(0).image * 0.3).astype(np.uint8)
        deadline = time.monotonic() + 60
        for seq in range(svc.drift.min_parts + 5):
            for camera in ("replay", "synthetic"):  # one at a time: the bus queues are short
                sender.send(dark, camera, seq, time.time_ns())
                while svc.accounting().get(camera, {}).get("inspected", 0) <= seq:
                    assert time.monotonic() < deadline
                    time.sleep(0.005)
        drifting = [a for a in _drift_messages(svc) if a.startswith("score drift")]
        assert drifting and all("on synthetic" in a for a in drifting)
    finally:
        sender.close()
        svc.stop(drain_quiet_ms=50)
