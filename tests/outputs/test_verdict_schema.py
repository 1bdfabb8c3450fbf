"""Every verdict document the service sends out (pass, reject with regions, error) is what
``inspector/outputs/verdict.schema.json`` describes, and the schema is strict enough to
refuse one that is not."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import zmq

from camera.synthetic import DEFECT_TYPES, PartGenerator
from inspector.bus import FrameSender
from inspector.config import parse_config
from inspector.inspection import DEMO_MODEL, InspectionService
from inspector.model import Detector
from inspector.outputs import SCHEMA_PATH

VALIDATOR = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


def test_pass_reject_and_error_documents_follow_the_schema(tmp_path: Path,
                                                           zmq_context: zmq.Context) -> None:
    frames = f"inproc://frames-{id(tmp_path)}"
    config = parse_config({
        "cameras": [{"id": "cam1", "type": "synthetic", "latency_budget_ms": 5000,
                     "mm_per_pixel": 0.1}],
        "bus": {"frames": frames, "results": f"inproc://results-{id(tmp_path)}"},
        "model": {"path": str(DEMO_MODEL)},
    }, base_dir=tmp_path)
    documents: list[dict[str, Any]] = []
    lock = threading.Lock()

    def collect(camera: str, document: dict[str, Any]) -> None:
        with lock:
            documents.append(document)

    service = InspectionService(config, Detector.open(DEMO_MODEL, threads=1,
                                                      providers=("cpu",)),
                                zmq_context, outputs=[collect])
    sender = FrameSender(frames, zmq_context, hwm=100)
    service.start()
    try:
        parts = PartGenerator(seed=1)
        sender.send(parts.render(0, None).image, "cam1", 0, time.time_ns(), part_id="P-0")
        for seq in range(1, 4):
            sender.send(parts.render(seq, DEFECT_TYPES[seq % len(DEFECT_TYPES)]).image, "cam1",
                        seq, time.time_ns())
        sender.send(parts.render(4, None).image, "cam1", 4, time.time_ns() - 10**10)  # stale
        deadline = time.monotonic() + 30
        while len(documents) < 5:
            assert time.monotonic() < deadline, documents
            time.sleep(0.01)
    finally:
        sender.close()
        service.stop(drain_quiet_ms=50)
    verdicts = {d["verdict"] for d in documents}
    assert verdicts == {"pass", "reject", "error"}
    assert any(d["regions"] for d in documents)
    for document in documents:
        VALIDATOR.validate(document)


@pytest.mark.parametrize("change", [
    {"verdict": "maybe"}, {"seq": -1}, {"camera": "../etc"}, {"extra": 1},
    {"latency_ms": {"total": "fast"}}, {"model_sha256": "xyz"},
])
def test_the_schema_refuses_documents_that_break_the_contract(change: dict) -> None:
    good = {"camera": "cam1", "seq": 3, "part_id": None, "verdict": "pass", "reject": False,
            "score": 0.2, "threshold": 1.0, "model_sha256": "ab" * 32, "captured_ns": 1,
            "inspected_ns": 2, "latency_ms": {"queue": 0.1, "model": 3.0, "total": 4.0},
            "regions": [], "error": None}
    VALIDATOR.validate(good)
    assert not VALIDATOR.is_valid({**good, **change})
