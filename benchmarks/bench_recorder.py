"""Recorder throughput and durability: records/s written with images, and how old the
oldest unwritten verdict gets at 90% of that rate.

Records are demo-sized synthetic parts (256x256 frames with a 256x256 anomaly map), a
``--reject-rate`` share of them rejects (all keep images) and the rest passes, 10% of
which keep images (the default ``storage.pass_sample_rate``). Each condition:

1. capacity: ``--capacity-records`` records queued up front (bounds lifted), written by
   the recorder as ``inspector run`` builds it: records/s, and records with images/s;
2. paced: records submitted at 90% of that capacity (and at each ``--rate``) for
   ``--seconds``, with the recorder's default bounds; per record, the time from
   ``submit`` to the commit of its row (p50/p99/max: the durability bound), the oldest
   unwritten record's age sampled every 5 ms, images shed and verdicts dropped.

Conditions: the recorder at each ``--niceness``, on an idle box and with ``--load`` busy
processes (default: one per core) standing in for inspection workers that saturate it.

    python benchmarks/bench_recorder.py                # ~2 minutes
    python benchmarks/bench_recorder.py --quick
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from camera.synthetic import PartGenerator
from inspector.model import usable_cores
from inspector.store import InspectionRecord, Recorder, RetentionPolicy, Store

CORES = usable_cores()
PASS_SAMPLE_RATE = 0.1


class TimedStore(Store):
    """A real store that notes when each record's row was committed."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.committed: dict[int, float] = {}

    def add_inspections(self, records: Sequence[InspectionRecord],
                        pass_sample_rate: float = 1.0) -> list[int]:
        ids = super().add_inspections(records, pass_sample_rate)
        now = time.monotonic()
        for record in records:
            self.committed[record.seq] = now
        return ids


def parts(count: int = 32) -> list[tuple[np.ndarray, np.ndarray]]:
    generator = PartGenerator(seed=3)
    out = []
    for i in range(count):
        image = generator.render(i).image
        heat = np.random.default_rng(i).random(image.shape[:2], dtype=np.float32)
        out.append((image, heat))
    return out


def make_record(seq: int, reject_rate: float, images: list[tuple[np.ndarray, np.ndarray]]
                ) -> InspectionRecord:
    frame, heat = images[seq % len(images)]
    reject = (seq * 7919 % 1000) < reject_rate * 1000
    now = time.time_ns()
    return InspectionRecord(
        camera="bench", seq=seq, part_id=f"p{seq}", captured_ns=now - 20_000_000,
        inspected_ns=now, verdict="reject" if reject else "pass", score=0.9 if reject else 0.1,
        threshold=0.5, model_sha256="ab" * 32,
        latency_ms={"queue": 1.0, "model": 10.0, "total": 20.0},
        regions=[{"x": 10, "y": 10, "w": 30, "h": 20, "area_px": 600, "peak": 2.0}]
        if reject else [],
        frame=frame, anomaly_map=heat, map_low=0.0, map_high=1.0)


def _busy() -> None:
    while True:
        pass


def capacity(root: Path, niceness: int, count: int, reject_rate: float,
             images: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    store = TimedStore(root)
    policy = RetentionPolicy(pass_sample_rate=PASS_SAMPLE_RATE)
    recorder = Recorder(store, policy, max_pending=count, max_pending_images=count,
                        max_image_wait_s=3600.0, niceness=niceness)
    for seq in range(count):
        recorder.submit(make_record(seq, reject_rate, images))
    started = time.monotonic()
    recorder.start()
    recorder.stop()
    seconds = time.monotonic() - started
    with_images = _with_images(store)
    store.close()
    return {"records_s": count / seconds, "images_s": with_images / seconds}


def _with_images(store: Store) -> int:
    return sum(1 for row in store.recent(1_000_000) if row["image_path"] is not None)


def paced(root: Path, niceness: int, rate: float, seconds: float, reject_rate: float,
          images: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    store = TimedStore(root)
    policy = RetentionPolicy(pass_sample_rate=PASS_SAMPLE_RATE)
    recorder = Recorder(store, policy, niceness=niceness)
    recorder.start()
    submitted: dict[int, float] = {}
    ages: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            ages.append(recorder.lag_s())

    sampler = threading.Thread(target=sample)
    sampler.start()
    total = int(rate * seconds)
    start = time.monotonic()
    for seq in range(total):
        due = start + seq / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        record = make_record(seq, reject_rate, images)
        submitted[seq] = time.monotonic()
        recorder.submit(record)
    achieved = total / (time.monotonic() - start)
    recorder.stop()
    done.set()
    sampler.join()
    latencies = np.array([store.committed[s] - t for s, t in submitted.items()
                          if s in store.committed]) * 1000
    row = {"rate": round(achieved, 1), "p50_ms": round(float(np.percentile(latencies, 50)), 1),
           "p90_ms": round(float(np.percentile(latencies, 90)), 1),
           "p99_ms": round(float(np.percentile(latencies, 99)), 1),
           "max_ms": round(float(latencies.max()), 1),
           "oldest_unwritten_max_ms": round(max(ages, default=0.0) * 1000, 1),
           "written": len(latencies), "submitted": total, "shed": recorder.shed,
           "dropped": recorder.dropped, "high_water": recorder.high_water}
    store.close()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--niceness", type=int, nargs="+", default=[0, 10])
    parser.add_argument("--load", type=int, nargs="+", default=[0, CORES],
                        help="busy processes beside the recorder (0: an idle box)")
    parser.add_argument("--rate", type=float, nargs="*", default=[],
                        help="also pace at these records/s")
    parser.add_argument("--reject-rate", type=float, default=0.1)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--capacity-records", type=int, default=2000)
    parser.add_argument("--root", type=Path, default=None,
                        help="put the stores here (the disk to measure); default: a temp dir")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    seconds = 4.0 if args.quick else args.seconds
    count = 600 if args.quick else args.capacity_records
    images = parts()
    report: dict[str, Any] = {"cores": CORES, "reject_rate": args.reject_rate,
                              "pass_sample_rate": PASS_SAMPLE_RATE, "runs": []}
    print(f"{CORES} cores; {args.reject_rate:.0%} rejects, {PASS_SAMPLE_RATE:.0%} of passes "
          "keep images; latency = submit to commit of the row")
    print("| load procs | nice | capacity rec/s | with images/s | paced rec/s | p50 ms | p90 ms "
          "| p99 ms | max ms | oldest unwritten max ms | shed | dropped | high water |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=args.root) as tmp:
        run = 0
        for load in args.load:
            hogs = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(load)]
            for hog in hogs:
                hog.start()
            try:
                for niceness in args.niceness:
                    run += 1
                    cap = capacity(Path(tmp) / f"cap{run}", niceness, count,
                                   args.reject_rate, images)
                    for rate in [0.9 * cap["records_s"], *args.rate]:
                        run += 1
                        row = paced(Path(tmp) / f"paced{run}", niceness, rate, seconds,
                                    args.reject_rate, images)
                        row.update(load=load, niceness=niceness,
                                   capacity_records_s=round(cap["records_s"], 1),
                                   capacity_images_s=round(cap["images_s"], 1))
                        report["runs"].append(row)
                        print(f"| {load} | {niceness} | {row['capacity_records_s']} | "
                              f"{row['capacity_images_s']} | {row['rate']} | {row['p50_ms']} | "
                              f"{row['p90_ms']} | {row['p99_ms']} | {row['max_ms']} | "
                              f"{row['oldest_unwritten_max_ms']} | {row['shed']} | "
                              f"{row['dropped']} | {row['high_water']} |", flush=True)
            finally:
                for hog in hogs:
                    hog.terminate()
                    hog.join()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
