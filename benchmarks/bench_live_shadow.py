"""What a live shadow costs the line: the active model's verdict latency with and without a
candidate scoring the same live frames beside it.

One pipeline (the demo model, one camera of 256x256 parts, recorder and store as
``inspector run`` builds them) is paced at 50% and 90% of its measured throughput. At each
load, windows without and with a live shadow alternate (off, on, off, on), so each pair
compares neighbours on a machine whose speed drifts. Reported: verdict latency p50/p99 of
the active model, verdicts later than 2x the quiet p99, and the share of frames the
candidate scored (the rest it skipped so as not to be in the way).

    python benchmarks/bench_live_shadow.py            # ~3 minutes
    python benchmarks/bench_live_shadow.py --seconds 5
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
from bench_pipeline import Run, frames

from inspector.inspection import DEMO_MODEL
from inspector.loop import LiveShadow
from inspector.model import LoadedModel, load_model, sha256_bytes


def candidate() -> LoadedModel:
    """The demo graph under another sha: the candidate costs what the active model costs."""
    model = load_model(DEMO_MODEL)
    graph = onnx.load_from_string(model.onnx)
    graph.doc_string += " (candidate)"
    data = graph.SerializeToString()
    card = model.card.model_copy(update={"name": "candidate", "onnx_sha256": sha256_bytes(data)})
    return LoadedModel(card, data, model.path)


def window(run: Run, images: list[np.ndarray], seconds: float, fps: float,
           shadow: LiveShadow | None) -> dict:
    run.service.live_shadow = shadow
    run.feed(images, seconds, fps)
    with run.lock:
        latencies = np.array(run.latencies)
    row = {"p50_ms": round(float(np.percentile(latencies, 50)), 1),
           "p99_ms": round(float(np.percentile(latencies, 99)), 1), "verdicts": latencies.size,
           "latencies": latencies}
    if shadow is not None:
        status = shadow.status()
        shadow.stop("window over")
        row["scored_share"] = round(status["scored"] / max(1, status["offered"]), 2)
    run.service.live_shadow = None
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per window")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    images = frames()
    model = candidate()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(Path(tmp), cameras=1, workers="auto", max_batch=1)
        try:
            full = run.feed(images, args.seconds, None)
            print(f"throughput {full:.1f} verdicts/s (1 camera, saturated)", flush=True)
            for load in (0.5, 0.9):
                fps = load * full
                results: dict[str, list[dict]] = {"off": [], "on": []}
                for _ in range(2):
                    results["off"].append(window(run, images, args.seconds, fps, None))
                    shadow = LiveShadow(model, run.store, minutes=60).start()
                    results["on"].append(window(run, images, args.seconds, fps, shadow))
                quiet_p99 = max(r["p99_ms"] for r in results["off"])
                for kind, windows in results.items():
                    latencies = np.concatenate([w["latencies"] for w in windows])
                    row = {"load": load, "fps": round(fps, 1), "live_shadow": kind,
                           "p50_ms": round(float(np.percentile(latencies, 50)), 1),
                           "p99_ms": round(float(np.percentile(latencies, 99)), 1),
                           "late_over_2x_quiet_p99": int(np.sum(latencies > 2 * quiet_p99)),
                           "verdicts": int(latencies.size)}
                    if kind == "on":
                        row["scored_share"] = [w["scored_share"] for w in windows]
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            run.close()
    print("\n| load | live shadow | fps | p50 ms | p99 ms | verdicts > 2x quiet p99 | "
          "frames the candidate scored |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        share = ", ".join(f"{s:.0%}" for s in r.get("scored_share", [])) or "-"
        print(f"| {r['load']:.0%} | {r['live_shadow']} | {r['fps']} | {r['p50_ms']} | "
              f"{r['p99_ms']} | {r['late_over_2x_quiet_p99']} of {r['verdicts']} | {share} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
