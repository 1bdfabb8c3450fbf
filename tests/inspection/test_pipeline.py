"""The inspection pipeline over real ZeroMQ sockets, a real ONNX model and real SQLite files."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import zmq

from camera.synthetic import PartGenerator
from inspector.bus import FrameSender, encode_frame
from inspector.config import parse_config
from inspector.fitting import FitOptions, fit
from inspector.imaging import list_images, read_image
from inspector.inspection import DEMO_MODEL, InspectionService, run_pipeline
from inspector.model import Detector
from inspector.outputs import ResultSubscriber
from inspector.store import InspectionRecord, Store
from tests.conftest import REPO_ROOT, make_endpoint


def _config(tmp_path: Path, frames: str, results: str, cameras: list[dict] | None = None,
            **sections: dict) -> object:
    data = {
        "cameras": cameras if cameras is not None else [{"id": "cam1", "type": "synthetic"}],
        "bus": {"frames": frames, "results": results},
        "model": {"path": str(DEMO_MODEL), "intra_op_threads": 2},
        "storage": {"root": str(tmp_path / "store")},
        **sections,
    }
    return parse_config(data, base_dir=tmp_path)


class _Collect:
    def __init__(self) -> None:
        self.records: list[InspectionRecord] = []
        self.lock = threading.Lock()

    def __call__(self, record: InspectionRecord) -> None:
        with self.lock:
            self.records.append(record)

    def wait(self, count: int, timeout_s: float = 30.0) -> list[InspectionRecord]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.records) >= count:
                    return list(self.records)
            time.sleep(0.02)
        raise AssertionError(f"only {len(self.records)} of {count} results arrived")


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def service(tmp_path: Path, zmq_context: zmq.Context, request: pytest.FixtureRequest
            ) -> Iterator[tuple]:
    frames, results = make_endpoint("inproc", tmp_path), f"inproc://results-{id(tmp_path)}"
    config = _config(tmp_path, frames, results,
                     cameras=[{"id": "cam1", "type": "synthetic", "latency_budget_ms": 2000}],
                     inspection={"workers": request.param})
    collect = _Collect()
    detector = Detector.open(DEMO_MODEL, threads=2, providers=("cpu",))
    svc = InspectionService(config, detector, zmq_context, sinks=[collect])
    svc.start()
    sender = FrameSender(frames, zmq_context, hwm=1000)
    yield svc, sender, collect, config
    sender.close()
    svc.stop(drain_quiet_ms=50)


def _part(index: int, defect: str | None = None) -> np.ndarray:
    return PartGenerator(seed=7).render(index, defect=defect).image


def test_defective_parts_are_rejected_and_good_parts_pass(service: tuple) -> None:
    svc, sender, collect, _ = service
    plan = [None, "scratch", None, "crack", None, "spot", None, "dent", None, "missing_feature"]
    for seq, defect in enumerate(plan):
        assert sender.send(_part(seq, defect), "cam1", seq, time.time_ns(), f"p{seq}")
    records = sorted(collect.wait(len(plan)), key=lambda r: r.seq)
    verdicts = [r.verdict for r in records]
    assert verdicts == ["pass" if d is None else "reject" for d in plan]
    assert all(r.regions for r in records if r.verdict == "reject")
    assert all(r.model_sha256 == svc.detector.model.sha256 for r in records)
    counts = svc.accounting()["cam1"]
    assert counts["received"] == counts["inspected"] + counts["stale"] == len(plan)
    assert counts["passed"] + counts["rejected"] + counts["errors"] == len(plan)


def test_the_pipeline_scores_a_frame_as_predict_does(service: tuple) -> None:
    _, sender, collect, _ = service
    image = read_image(list_images(REPO_ROOT / "sample_images/test/crack")[0])
    sender.send(image, "cam1", 1, time.time_ns())
    record = collect.wait(1)[0]
    expected = Detector.open(DEMO_MODEL, providers=("cpu",)).predict(image)
    assert record.score == pytest.approx(expected.score, rel=1e-5)
    assert record.verdict == expected.verdict == "reject"


def test_a_stale_frame_gets_error_without_running_the_model(service: tuple) -> None:
    svc, sender, collect, _ = service
    sender.send(_part(0), "cam1", 1, time.time_ns() - 5_000_000_000)  # 5 s old, budget 2 s
    sender.send(_part(1), "cam1", 2, time.time_ns())
    stale, fresh = sorted(collect.wait(2), key=lambda r: r.seq)
    assert stale.verdict == "error" and "stale" in stale.error and stale.score is None
    assert fresh.verdict == "pass"
    counts = svc.accounting()["cam1"]
    assert counts["stale"] == 1 and counts["inspected"] == 1 and counts["errors"] == 1


def test_a_corrupt_frame_is_counted_and_skipped_and_the_next_is_inspected(
    service: tuple,
) -> None:
    svc, sender, collect, _ = service
    header = encode_frame(_part(1), "cam1", 1, time.time_ns())[0]
    sender.send_parts([header, b"\0" * 100])  # a valid header, a payload far too short
    sender.send_parts([b"not json at all", b"x"])
    sender.send(_part(2), "cam1", 2, time.time_ns())
    (record,) = collect.wait(1)
    assert record.seq == 2 and record.verdict == "pass"
    counts = svc.accounting()
    assert counts["cam1"]["malformed"] == 1 and counts["?"]["malformed"] == 1
    assert counts["cam1"]["received"] == counts["cam1"]["inspected"] == 1


def test_results_are_published_as_json_for_subscribers(
    service: tuple, zmq_context: zmq.Context
) -> None:
    svc, sender, _, config = service
    subscriber = ResultSubscriber(config.bus.results, ("cam1",), zmq_context)
    try:
        time.sleep(0.2)  # a SUB socket misses what is published before it joins
        sender.send(_part(0, "crack"), "cam1", 7, time.time_ns(), "part-7")
        got = subscriber.recv(timeout_ms=10_000)
    finally:
        subscriber.close()
    assert got is not None
    topic, doc = got
    assert topic == "cam1" and doc["seq"] == 7 and doc["part_id"] == "part-7"
    assert doc["verdict"] == "reject" and doc["reject"] is True
    assert doc["score"] >= doc["threshold"] and doc["model_sha256"] == svc.detector.model.sha256
    assert set(doc["latency_ms"]) == {"queue", "model", "total"} and doc["regions"]


def test_hot_swap_under_load_loses_no_frame_and_rolls_back(
    service: tuple, tmp_path: Path
) -> None:
    svc, sender, collect, _ = service
    other = tmp_path / "other-model"
    fit(list_images(REPO_ROOT / "sample_images/train/good")[:8], other,
        FitOptions(backbone="mobilenet_v2", max_bank=256))
    old_sha = svc.detector.model.sha256
    total = 120
    stop = threading.Event()

    def pump() -> None:
        for seq in range(total):
            sender.send(_part(seq % 5), "cam1", seq, time.time_ns())
            time.sleep(0.005)
        stop.set()

    pumping = threading.Thread(target=pump)
    pumping.start()
    time.sleep(0.1)
    svc.swap_model(other, wait=True)
    pumping.join()
    records = collect.wait(total)
    assert sorted(r.seq for r in records) == list(range(total))
    shas = [r.model_sha256 for r in sorted(records, key=lambda r: r.inspected_ns)]
    assert shas[0] == old_sha and shas[-1] != old_sha and svc.swaps == 1
    assert svc.previous is not None and svc.previous.model.sha256 == old_sha
    assert svc.rollback()
    sender.send(_part(0), "cam1", total, time.time_ns())
    assert collect.wait(total + 1)[-1].model_sha256 == old_sha


def test_two_workers_inspect_side_by_side_and_each_camera_keeps_its_order(
    tmp_path: Path, zmq_context: zmq.Context
) -> None:
    frames, results = make_endpoint("inproc", tmp_path), f"inproc://results-{id(tmp_path)}"
    config = _config(tmp_path, frames, results,
                     cameras=[{"id": c, "type": "synthetic", "latency_budget_ms": 60_000}
                              for c in ("a", "b")],
                     model={"path": str(DEMO_MODEL), "intra_op_threads": 1},
                     inspection={"workers": 2})
    order: list[tuple[str, int, str]] = []  # emit order, and the worker that emitted

    def sink(record: InspectionRecord) -> None:
        order.append((record.camera, record.seq, threading.current_thread().name))

    collect = _Collect()
    detector = Detector.open(DEMO_MODEL, threads=1, providers=("cpu",))
    svc = InspectionService(config, detector, zmq_context, sinks=[sink, collect])
    svc.start()
    sender = FrameSender(frames, zmq_context, hwm=1000)
    try:
        per_camera = 40
        for seq in range(per_camera):  # queued faster than inspected: both workers stay busy
            for camera in ("a", "b"):
                assert sender.send(_part(seq % 7), camera, seq, time.time_ns())
        collect.wait(2 * per_camera)
    finally:
        sender.close()
        svc.stop(drain_quiet_ms=50)
    for camera in ("a", "b"):
        assert [seq for c, seq, _ in order if c == camera] == list(range(per_camera))
    assert {worker for *_, worker in order} == {"inspector-0", "inspector-1"}
    counts = svc.accounting()
    assert all(counts[c]["received"] == counts[c]["inspected"] == per_camera for c in "ab")


def test_a_failing_sink_loses_no_other_verdict_and_inspection_goes_on(service: tuple) -> None:
    svc, sender, collect, _ = service

    def broken(record: InspectionRecord) -> None:
        if record.seq == 2:
            raise RuntimeError("sink broke")

    svc.sinks.insert(0, broken)  # the collector after it never sees seq 2
    for seq in range(6):
        sender.send(_part(seq), "cam1", seq, time.time_ns())
    records = collect.wait(5)
    time.sleep(0.2)
    assert sorted(r.seq for r in collect.records) == [0, 1, 3, 4, 5]
    counts = svc.accounting()["cam1"]
    assert counts["received"] == counts["inspected"] == 6
    assert counts["passed"] + counts["rejected"] + counts["errors"] == 6
    assert all(r.verdict == "pass" for r in records)


def test_an_unforeseen_failure_gives_its_frames_an_error_and_the_next_frame_is_inspected(
    service: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, sender, collect, _ = service
    real = svc.detector.predict_batch

    def broken(frames: list) -> list:
        if any(float(f.mean()) == 0.0 for f in frames):  # the black frame breaks it
            raise RuntimeError("unforeseen")
        return real(frames)

    monkeypatch.setattr(svc.detector, "predict_batch", broken)
    sender.send(np.zeros((256, 256, 3), np.uint8), "cam1", 0, time.time_ns())
    sender.send(_part(1), "cam1", 1, time.time_ns())
    failed, fine = sorted(collect.wait(2), key=lambda r: r.seq)
    assert failed.verdict == "error" and "internal error: unforeseen" in failed.error
    assert fine.verdict == "pass"
    counts = svc.accounting()["cam1"]
    assert counts["received"] == counts["inspected"] == 2 and counts["errors"] == 1


def test_run_pipeline_accounts_for_every_frame_and_stores_every_verdict(
    tmp_path: Path,
) -> None:
    config = _config(
        tmp_path, "inproc://run-frames", "inproc://run-results",
        cameras=[{"id": "syn", "type": "synthetic", "seed": 7, "defect_rate": 0.5, "fps": 25},
                 {"id": "replay", "type": "folder", "path": str(REPO_ROOT / "sample_images/test"),
                  "fps": 10}],
        storage={"root": str(tmp_path / "store"), "pass_sample_rate": 1.0},
    )
    out = open(tmp_path / "out.txt", "w")  # noqa: SIM115 - closed below
    totals = run_pipeline(config, threading.Event(), out, duration_s=4.0, interval_s=1.0)
    out.close()
    for camera, c in totals.items():
        assert c["captured"] == c["published"] + c["dropped"], camera
        assert c["received"] == c["published"] and c["malformed"] == 0, camera
        assert c["received"] == c["inspected"] + c["stale"], camera
        assert c["passed"] + c["rejected"] + c["errors"] == c["received"], camera
        assert c["received"] > 5, camera
    with sqlite3.connect(tmp_path / "store" / "inspections.db") as db:
        rows = db.execute("SELECT camera, part_id, verdict, image_path FROM inspections").fetchall()
    assert len(rows) == sum(c["received"] for c in totals.values())
    synthetic = [(part, verdict) for camera, part, verdict, _ in rows if camera == "syn"]
    assert {v for p, v in synthetic if p.startswith("good-")} == {"pass"}
    assert {v for p, v in synthetic if not p.startswith("good-")} == {"reject"}
    assert all((tmp_path / "store" / path).is_file() for *_, path in rows if path)


class _SlowStore(Store):
    """A real store on a slow disk, that notes whether it was closed under the recorder."""

    closed_while_recording: ClassVar[list[bool]] = []

    def add_inspections(self, records, pass_sample_rate=1.0):  # type: ignore[no-untyped-def]
        time.sleep(0.2)  # a slow commit: the recorder is behind when the run stops
        return super().add_inspections(records, pass_sample_rate)

    def close(self) -> None:
        self.closed_while_recording.append(
            any(t.name == "recorder" and t.is_alive() for t in threading.enumerate()))
        super().close()


def test_run_pipeline_closes_the_store_only_after_the_recorder_wrote_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("inspector.inspection.pipeline.Store", _SlowStore)
    _SlowStore.closed_while_recording = []
    config = _config(
        tmp_path, "inproc://slow-frames", "inproc://slow-results",
        cameras=[{"id": "syn", "type": "synthetic", "seed": 7, "defect_rate": 0.5, "fps": 30}],
        storage={"root": str(tmp_path / "store"), "pass_sample_rate": 1.0},
    )
    with open(tmp_path / "out.txt", "w") as out:
        totals = run_pipeline(config, threading.Event(), out, duration_s=2.0, interval_s=1.0)
    assert _SlowStore.closed_while_recording == [False]
    with sqlite3.connect(tmp_path / "store" / "inspections.db") as db:
        stored = db.execute("SELECT count(*) FROM inspections").fetchone()[0]
    assert stored == totals["syn"]["received"] > 10


def test_the_storage_bounds_come_from_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``storage.min_free_mb`` above the disk's free space: every verdict is stored, none
    with images; the recorder's queue bounds are the config's."""
    from inspector.store import Recorder

    made: list[Recorder] = []

    class SeenRecorder(Recorder):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr("inspector.inspection.pipeline.Recorder", SeenRecorder)
    config = _config(
        tmp_path, "inproc://bounds-frames", "inproc://bounds-results",
        cameras=[{"id": "syn", "type": "synthetic", "seed": 7, "defect_rate": 0.5, "fps": 20}],
        storage={"root": str(tmp_path / "store"), "pass_sample_rate": 1.0,
                 "min_free_mb": 2.0**40, "reserve_mb": 0, "recorder_queue": 500,
                 "recorder_image_queue": 4},
    )
    with open(tmp_path / "out.txt", "w") as out:
        totals = run_pipeline(config, threading.Event(), out, duration_s=2.0, interval_s=1.0)
    [recorder] = made
    assert (recorder.max_pending, recorder.max_pending_images) == (500, 4)
    with sqlite3.connect(tmp_path / "store" / "inspections.db") as db:
        rows = db.execute("SELECT image_path FROM inspections").fetchall()
    assert len(rows) == totals["syn"]["received"] > 5
    assert all(path is None for (path,) in rows)  # below the floor: verdicts, no images
    assert not (tmp_path / "store" / "disk-reserve").exists()  # a reserve of 0 bytes


def test_the_storage_defaults_are_the_stores() -> None:
    from inspector.config import StorageConfig
    from inspector.store import Recorder, store

    defaults = StorageConfig()
    assert defaults.min_free_mb * 2**20 == store.DEFAULT_MIN_FREE_BYTES
    assert defaults.reserve_mb * 2**20 == store.DEFAULT_RESERVE_BYTES
    init = Recorder.__init__.__defaults__
    names = Recorder.__init__.__code__.co_varnames[1:Recorder.__init__.__code__.co_argcount]
    given = dict(zip(names[-len(init):], init, strict=True))
    assert (given["max_pending"], given["max_pending_images"]) == (
        defaults.recorder_queue, defaults.recorder_image_queue)


def _write_run_config(tmp_path: Path) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(f"""
[[cameras]]
id = "syn"
type = "synthetic"
seed = 7
defect_rate = 0.5
fps = 30

[bus]
frames = "ipc://{tmp_path}/frames.sock"
results = "ipc://{tmp_path}/results.sock"

[model]
path = "{DEMO_MODEL}"
intra_op_threads = 2

[storage]
root = "{tmp_path / 'store'}"
pass_sample_rate = 1.0
""")
    return path


def _start_run(config: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "inspector.cli.commands", "run", "--config", str(config),
         "--interval", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_rows(db: Path, count: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if db.exists():
            try:
                with sqlite3.connect(db) as conn:
                    if conn.execute("SELECT count(*) FROM inspections").fetchone()[0] >= count:
                        return
            except sqlite3.OperationalError:
                pass
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} rows in {db} after {timeout_s} s")


def test_sigterm_drains_every_received_frame_into_the_store(tmp_path: Path) -> None:
    process = _start_run(_write_run_config(tmp_path))
    db = tmp_path / "store" / "inspections.db"
    _wait_for_rows(db, 10)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["camera"] == "syn"
    assert summary["received"] == summary["inspected"] + summary["stale"]
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT count(*) FROM inspections").fetchone()[0]
    assert stored == summary["received"] > 0


def test_kill_9_leaves_a_consistent_store_and_inspection_resumes(tmp_path: Path) -> None:
    config = _write_run_config(tmp_path)
    process = _start_run(config)
    db = tmp_path / "store" / "inspections.db"
    _wait_for_rows(db, 20)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    store = Store(tmp_path / "store")  # opens and recovers
    try:
        before = store.count()
        for row in store.recent(limit=100_000):
            for key in ("image_path", "overlay_path", "thumb_path"):
                if row[key]:
                    assert (tmp_path / "store" / row[key]).is_file()
    finally:
        store.close()
    assert not list((tmp_path / "store").rglob("*.tmp"))
    process = _start_run(config)
    _wait_for_rows(db, before + 10)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == 0


def test_regions_are_the_blobs_above_the_threshold_strongest_first() -> None:
    from inspector.inspection.regions import find_regions

    heat = np.zeros((100, 200), np.float32)
    heat[10:20, 30:50] = 5.0  # 200 px, peak 5
    heat[60:64, 100:104] = 9.0  # 16 px, peak 9
    heat[90, 190] = 7.0  # one pixel: noise
    regions = find_regions(heat, threshold=3.0, min_area_px=4, mm_per_pixel=0.5)
    boxes = [(r["x"], r["y"], r["w"], r["h"]) for r in regions]
    assert boxes == [(100, 60, 4, 4), (30, 10, 20, 10)]
    assert regions[0]["peak"] == 9.0 and regions[1]["area_px"] == 200
    assert regions[1]["area_mm2"] == pytest.approx(50.0)
    assert find_regions(heat, threshold=10.0) == []


def test_demo_runs_with_no_configuration(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "inspector.cli.commands", "demo", "--duration", "4",
         "--store", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "results store" in out.stdout
    summaries = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert {s["camera"] for s in summaries} == {"synthetic", "replay"}
    for s in summaries:
        assert s["inspected"] > 0 and s["received"] == s["inspected"] + s["stale"]
    assert (tmp_path / "demo" / "inspections.db").is_file()


def test_a_new_threshold_takes_over_between_frames_and_can_be_rolled_back(
    service: tuple,
) -> None:
    svc, sender, collect, _ = service
    old = svc.detector.threshold
    svc.set_threshold(old * 100, user="admin")
    sender.send(_part(0, "crack"), "cam1", 1, time.time_ns())
    (record,) = collect.wait(1)
    assert record.threshold == pytest.approx(old * 100) and record.verdict == "pass"
    assert svc.detector.model.sha256 == svc.previous.model.sha256  # same ONNX bytes
    assert svc.detector.card.threshold.detail == {"set_by": "admin", "previous": old}
    assert svc.rollback()
    sender.send(_part(0, "crack"), "cam1", 2, time.time_ns())
    assert collect.wait(2)[-1].verdict == "reject"
    assert svc.previous is None and not svc.rollback()  # undone once, not re-applied
    with pytest.raises(ValueError, match="positive"):
        svc.set_threshold(-1)
