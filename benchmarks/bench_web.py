"""Server time of the UI's pages and API calls with 100,000 inspections in the store.

Fills a temporary store (no images), signs in through the Flask test client (no
network), and times each request in the server process: median and max of
``--repeats`` requests.

    python benchmarks/bench_web.py                 # 100,000 inspections
    python benchmarks/bench_web.py --rows 10000
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from inspector.config import parse_config
from inspector.store import InspectionRecord, Store
from web import create_app
from web.auth import add_user

PAGES = ["/panel", "/api/panel", "/review/", "/review/?verdict=reject&min_score=1",
         "/review/?view=disagreements", "/api/inspections?limit=100", "/api/stats?hours=24",
         "/review/50000"]


def fill(store: Store, rows: int) -> None:
    rng = np.random.default_rng(0)
    now = time.time_ns()
    batch = []
    for i in range(rows):
        score = float(rng.gamma(4, 0.5))
        verdict = "reject" if score > 3.5 else "pass"
        batch.append(InspectionRecord(
            camera=f"cam{i % 4}", seq=i, part_id=f"p{i}",
            captured_ns=now - (rows - i) * 500_000_000, inspected_ns=now - (rows - i) * 500_000_000,
            verdict=verdict, score=score, threshold=3.5, model_sha256="ab" * 32,
            latency_ms={"total": float(rng.normal(20, 3))}, regions=[]))
        if len(batch) == 2000:
            store.add_inspections(batch)
            batch = []
    if batch:
        store.add_inspections(batch)
    for i in range(1, rows, 97):  # some labels, some of them disagreeing
        store.add_label(i, "good" if i % 2 else "defect", "qa")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp))
        started = time.perf_counter()
        fill(store, args.rows)
        print(f"filled {store.count():,} inspections in {time.perf_counter() - started:.1f} s")
        add_user(store, "admin", "admin", "bench-password")
        config = parse_config({"storage": {"root": tmp}, "web": {"secret_key": "bench"}})
        client = create_app(config, store).test_client()
        token = re.search(r'name="csrf_token" value="([^"]+)"',
                          client.get("/login").text).group(1)
        client.post("/login", data={"username": "admin", "password": "bench-password",
                                    "csrf_token": token})
        print("| request | median ms | max ms |")
        print("|---|---|---|")
        for path in PAGES:
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - t0) * 1e3)
                assert response.status_code == 200, (path, response.status_code)
            print(f"| `GET {path}` | {statistics.median(times):.1f} | {max(times):.1f} |")
        store.close()
    live_view_cost()


def live_view_cost() -> None:
    """CPU per live stream: encoding time x frames per second, at the caps in web/live.py."""
    from web.live import LIVE_FPS, MAX_STREAMS, render_frame

    print(f"\nlive view: at most {LIVE_FPS:g} frames/s per stream, {MAX_STREAMS} streams")
    print("| frame | heatmap | ms per frame | CPU share per stream | CPU share, all streams |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for height, width in ((256, 256), (1024, 1280), (2048, 2448)):
        frame = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        heat = rng.random((height, width), dtype=np.float32)
        for overlay in (False, True):
            times = []
            for _ in range(10):
                t0 = time.perf_counter()
                render_frame(frame, heat, {}, overlay, 0.0, 1.0)
                times.append(time.perf_counter() - t0)
            ms = statistics.median(times) * 1e3
            share = ms / 1e3 * LIVE_FPS
            print(f"| {width}x{height} | {'on' if overlay else 'off'} | {ms:.1f} | "
                  f"{100 * share:.1f}% of a core | {100 * share * MAX_STREAMS:.1f}% |")


if __name__ == "__main__":
    main()
