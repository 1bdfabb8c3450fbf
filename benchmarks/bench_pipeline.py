"""End-to-end inspection throughput and latency against a bare ONNX Runtime session loop.

In one run, on the bundled demo model (256x256):

1. bare: ``session.run`` on pre-rendered 256x256 frames, batch 1, two ways: one
   caller with every core on each frame (serial), and as many callers, with as
   many threads each, as the pipeline's workers (same plan); measured again right
   before each pipeline configuration (this VM's speed drifts within minutes, so
   each ratio compares neighbours);
2. pipeline throughput with 1 and 2 cameras (sender threads keep the bus full):
   frames go through the real bus, the inspection core (``--workers`` model runs
   side by side, batching across cameras up to ``--max-batch``), the result
   publisher and the recorder into a real SQLite store with image files;
3. capture-to-verdict latency (p50/p99) with the cameras paced at 50% and 90% of
   the measured throughput, against 2 x the model's own latency + 5 ms, that
   latency taken both ways: one frame on every core (serial) and as the
   workers run it (same plan);
4. peak RSS of the process.

    python benchmarks/bench_pipeline.py            # ~5 minutes
    python benchmarks/bench_pipeline.py --quick
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

from camera.synthetic import PartGenerator
from inspector.bus import FrameSender
from inspector.config import parse_config
from inspector.inspection import (
    DEMO_MODEL,
    InspectionService,
    load_detector,
    retention_policy,
    thread_plan,
)
from inspector.model import ThreadPlan, create_session, usable_cores
from inspector.store import InspectionRecord, Recorder, Store

CORES = usable_cores()


def frames(count: int = 40) -> list[np.ndarray]:
    generator = PartGenerator(seed=11, defect_rate=0.2)
    return [generator.render(i).image for i in range(count)]


SERIAL = ThreadPlan(workers=1, intra_op_threads=0)


def bare_fps(images: list[np.ndarray], seconds: float, plan: ThreadPlan = SERIAL
             ) -> tuple[float, float]:
    """Frames per second and median ms per frame of a bare session on the same model, batch
    1, with the session options the pipeline uses, so the ratio is the pipeline's own cost.
    ``plan.workers`` threads call ``run`` side by side."""
    callers, intra = plan.workers, plan.intra_op_threads
    session = create_session((DEMO_MODEL / "model.onnx").read_bytes(), intra, ("cpu",))
    for image in images[:5]:
        session.run(None, {"image": image[None]})
    times: list[float] = []
    started = time.perf_counter()

    def loop(offset: int) -> None:
        i = offset
        while time.perf_counter() - started < seconds:
            t0 = time.perf_counter()
            session.run(None, {"image": images[i % len(images)][None]})
            times.append(time.perf_counter() - t0)
            i += 1

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(times) / (time.perf_counter() - started), float(np.median(times) * 1e3)


def config(cameras: int, workers: int | str, max_batch: int, tag: str = "plan",
           root: Path = Path("var"), frame_format: str = "png"):
    """The product's config for one benchmark configuration; threads as "auto" plans them."""
    return parse_config({
        "cameras": [{"id": f"cam{i}", "type": "synthetic", "latency_budget_ms": 60_000}
                    for i in range(cameras)],
        "bus": {"frames": f"inproc://frames-{tag}", "results": f"inproc://results-{tag}"},
        "model": {"path": str(DEMO_MODEL), "providers": ["cpu"]},
        "inspection": {"max_batch": max_batch, "workers": workers},
        "storage": {"root": str(root / tag), "frame_format": frame_format},
    })


class Run:
    """One pipeline (core + recorder + store) fed by sender threads."""

    def __init__(self, root: Path, cameras: int, workers: int | str, max_batch: int,
                 record: bool = True, frame_format: str = "png") -> None:
        self.context = zmq.Context()
        tag = f"{cameras}-{workers}-{max_batch}-{time.monotonic_ns()}"
        self.config = config(cameras, workers, max_batch, tag, root, frame_format)
        self.store = Store(self.config.storage.root, frame_format=frame_format)
        # The recorder exactly as `inspector run` builds it (passes keep images at the
        # configured sample rate, 10% by default).
        self.recorder = Recorder(self.store, retention_policy(self.config.storage))
        self.latencies: list[float] = []
        self.window_start_ns = 0  # frames captured earlier (a backlog) do not count
        self.lock = threading.Lock()
        detector = load_detector(self.config, DEMO_MODEL)
        sinks = [self.recorder.submit, self._latency] if record else [self._latency]
        self.service = InspectionService(self.config, detector, self.context, sinks=sinks)
        self.recorder.start()
        self.service.start()

    def _latency(self, record: InspectionRecord) -> None:
        with self.lock:
            if record.captured_ns >= self.window_start_ns:
                self.latencies.append(record.latency_ms["total"])

    def feed(self, images: list[np.ndarray], seconds: float, fps: float | None) -> float:
        """Send for ``seconds`` (as fast as accepted, or paced at ``fps`` per camera);
        return verdicts per second over the window."""
        stop = threading.Event()

        def camera(index: int) -> None:
            sender = FrameSender(self.config.bus.frames, self.context, hwm=8)
            seq, due = 0, time.perf_counter()
            while not stop.is_set():
                sent = sender.send(images[seq % len(images)], f"cam{index}", seq, time.time_ns())
                seq += sent
                if fps is None:
                    # Keep the queue full without retrying: a retry loop would steal
                    # the cores being measured.
                    sender.wait_ready(100)
                else:
                    due += 1 / fps
                    time.sleep(max(0.0, due - time.perf_counter()))
            sender.close()

        threads = [threading.Thread(target=camera, args=(i,))
                   for i in range(len(self.config.cameras))]
        for t in threads:
            t.start()
        time.sleep(2.0)  # settle: the backlog of an earlier saturated phase drains
        with self.lock:
            self.latencies.clear()
            self.window_start_ns = time.time_ns()
        before = sum(c["inspected"] for c in self.service.accounting().values())
        started = time.perf_counter()
        time.sleep(seconds)
        done = sum(c["inspected"] for c in self.service.accounting().values())
        rate = (done - before) / (time.perf_counter() - started)
        stop.set()
        for t in threads:
            t.join()
        return rate

    def close(self) -> None:
        self.service.stop(drain_quiet_ms=100)
        self.recorder.stop()
        self.store.close()
        self.context.term()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workers", nargs="+", default=["1", "auto"],
                        help="inspection.workers values to compare (same resolved plan: run once)")
    parser.add_argument("--max-batch", type=int, nargs="+", default=[1])
    parser.add_argument("--no-store", action="store_true",
                        help="leave the recorder out (to see what storing costs)")
    parser.add_argument("--frame-format", choices=["png", "jpeg"], default="png",
                        help="how the store keeps frames (storage.frame_format)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    seconds = 3.0 if args.quick else 10.0
    images = frames()
    report: dict = {"cores": CORES, "runs": []}
    print(f"{CORES} cores; bare serial: 1 caller x all cores; bare same plan: as many "
          "callers x threads as the pipeline's workers")
    print("| cameras | workers x threads | max_batch | bare serial fps | bare same-plan fps "
          "| bare ms | throughput fps | / serial | / same plan | p50 ms @50% | p99 ms @50% "
          "| p50 ms @90% | p99 ms @90% | p99 target ms: serial / same plan |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for cameras in args.cameras:
            plans = {}
            for workers in args.workers:
                value = workers if workers == "auto" else int(workers)
                plans.setdefault(thread_plan(config(cameras, value, 1)), value)
            for plan, workers in plans.items():
                for max_batch in args.max_batch:
                    row = measure(images, seconds, Path(tmp), cameras, workers, plan,
                                  max_batch, record=not args.no_store,
                                  frame_format=args.frame_format)
                    report["runs"].append(row)
                    print(f"| {cameras} | {row['plan']} | {max_batch} | {row['bare_serial_fps']} "
                          f"| {row['bare_plan_fps']} | {row['model_ms']} | {row['fps']} | "
                          f"{row['ratio_serial']} | {row['ratio_plan']} | "
                          f"{row['p50@0.5']} | {row['p99@0.5']} | "
                          f"{row['p50@0.9']} | {row['p99@0.9']} | {row['target_ms']} / "
                          f"{row['plan_target_ms']} |",
                          flush=True)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report["peak_rss_mb"] = round(rss_mb, 1)
    print(f"peak RSS: {rss_mb:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def measure(images: list[np.ndarray], seconds: float, root: Path, cameras: int,
            workers: int | str, plan: ThreadPlan, max_batch: int, record: bool,
            frame_format: str = "png") -> dict:
    serial, model_ms = bare_fps(images, seconds)
    planned, plan_ms = bare_fps(images, seconds, plan) if plan.workers > 1 else (serial, model_ms)
    run = Run(root, cameras, workers, max_batch, record=record, frame_format=frame_format)
    try:
        fps = run.feed(images, seconds, None)
        row = {"cameras": cameras, "workers": workers, "max_batch": max_batch,
               "plan": f"{plan.workers} x {plan.intra_op_threads or CORES}",
               "bare_serial_fps": round(serial, 1), "bare_plan_fps": round(planned, 1),
               "model_ms": round(model_ms, 2), "fps": round(fps, 1),
               "ratio_serial": round(fps / serial, 2),
               "ratio_plan": round(fps / planned, 2),
               "plan_ms": round(plan_ms, 2), "target_ms": round(2 * model_ms + 5, 1),
               "plan_target_ms": round(2 * plan_ms + 5, 1)}
        for load in (0.5, 0.9):
            run.feed(images, seconds, load * fps / cameras)
            with run.lock:
                lat = np.array(run.latencies)
            row[f"p50@{load}"] = round(float(np.percentile(lat, 50)), 1)
            row[f"p99@{load}"] = round(float(np.percentile(lat, 99)), 1)
    finally:
        run.close()
    return row


if __name__ == "__main__":
    main()
