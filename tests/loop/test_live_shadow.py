"""Live shadow: a candidate scores live frames beside the active model, its verdicts stored
and never sent on; it never makes inspection wait, and it ends by itself."""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest

from camera.synthetic import PartGenerator
from inspector.errors import InspectorError
from inspector.inspection import DEMO_MODEL
from inspector.loop import LiveShadow
from inspector.loop.live_shadow import BUSY_LIMIT, QUEUE_FRAMES
from inspector.model import LoadedModel, load_model, sha256_bytes
from inspector.store import Store
from inspector.store import models as store_models


def strict(model: LoadedModel) -> LoadedModel:
    """The demo graph as another model (other bytes, so another sha) that rejects every part."""
    graph = onnx.load_from_string(model.onnx)
    graph.doc_string += " (the strict variant)"  # other bytes, the same graph
    data = graph.SerializeToString()
    card = model.card.model_copy(update={
        "name": "rejects-all", "onnx_sha256": sha256_bytes(data),
        "threshold": model.card.threshold.model_copy(update={"value": 1e-6})})
    return LoadedModel(card, data, model.path)


def test_the_candidate_s_verdicts_are_stored_and_never_sent_on(service: tuple,
                                                               store: Store) -> None:
    svc, sender, collect = service
    candidate = strict(load_model(DEMO_MODEL))
    shadow = LiveShadow(candidate, store, minutes=5).start()
    svc.live_shadow = shadow
    parts = PartGenerator(seed=7)
    for seq in range(12):
        sender.send(parts.render(seq).image, "cam1", seq, time.time_ns())
        collect.wait(seq + 1)  # one at a time: the shadow's queue never overflows here
        deadline = time.monotonic() + 10
        while sum(shadow.status()[k] for k in ("scored", "skipped", "yielded")) < seq + 1:
            assert time.monotonic() < deadline, shadow.status()
            time.sleep(0.01)
    shadow.stop("test")
    status = shadow.status()
    assert (status["offered"], status["running"], status["stopped_by"]) == (12, False, "test")
    assert status["scored"] + status["skipped"] + status["yielded"] == 12
    assert status["scored"] >= 1
    active = [r for r in collect.records]
    assert {r.model_sha256 for r in active} == {svc.detector.model.sha256}  # only the active
    rows = store.shadow_results(candidate.sha256, limit=100)
    assert len(rows) == status["scored"]
    assert all(r["verdict"] == "reject" and r["active_sha256"] == svc.detector.model.sha256
               for r in rows)
    passed = sum(r.verdict == "pass" for r in active if r.seq in {row["seq"] for row in rows})
    assert status["disagreements"] == passed  # every pass the candidate rejects
    assert len(store.shadow_results(candidate.sha256, disagreements=True)) == passed
    assert len(status["recent_disagreements"]) == min(passed, 50)


def test_offering_never_waits_for_the_candidate(store: Store) -> None:
    shadow = LiveShadow(strict(load_model(DEMO_MODEL)), store, minutes=1)  # not started
    frame = np.zeros((64, 64, 3), np.uint8)
    started = time.monotonic()
    for seq in range(50):
        shadow.offer("cam1", seq, seq, frame, "ab" * 32, 1.0, "pass")
    assert time.monotonic() - started < 5  # nothing blocked (a generous bound, not a timing)
    status = shadow.status()
    assert (status["offered"], status["skipped"]) == (50, 50 - QUEUE_FRAMES)


def test_it_stands_aside_while_inspection_is_busy(store: Store) -> None:
    shadow = LiveShadow(strict(load_model(DEMO_MODEL)), store, minutes=1)  # not started
    frame = np.zeros((64, 64, 3), np.uint8)
    shadow.offer("cam1", 1, 1, frame, "ab" * 32, 1.0, "pass", busy=BUSY_LIMIT)
    shadow.offer("cam1", 2, 2, frame, "ab" * 32, 1.0, "pass", busy=BUSY_LIMIT - 0.01)
    status = shadow.status()
    assert (status["offered"], status["yielded"], status["skipped"]) == (2, 1, 0)
    assert shadow._queue.qsize() == 1  # only the frame offered while inspection had room


def test_it_ends_by_itself_when_its_time_is_up(store: Store) -> None:
    now = [0.0]
    shadow = LiveShadow(strict(load_model(DEMO_MODEL)), store, minutes=1,
                        clock=lambda: now[0]).start()
    assert shadow.running
    now[0] = 61.0
    deadline = time.monotonic() + 5
    while shadow.running:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert shadow.status()["seconds_left"] == 0.0
    for minutes in (0, -1, 24 * 60 + 1):
        with pytest.raises(InspectorError, match="minutes"):
            LiveShadow(strict(load_model(DEMO_MODEL)), store, minutes=minutes)


def test_the_store_keeps_a_bounded_number_of_shadow_results(store: Store, monkeypatch) -> None:
    monkeypatch.setattr(store_models, "MAX_SHADOW_RESULTS", 5)
    rows = [("cam1", seq, seq, "cd" * 32, 1.0, "reject", "ab" * 32, 0.5, "pass")
            for seq in range(8)]
    store.add_shadow_results(rows[:4])
    store.add_shadow_results(rows[4:])
    kept = store.shadow_results("cd" * 32)
    assert [r["seq"] for r in kept] == [7, 6, 5, 4, 3]
