"""ONNX Runtime execution providers side by side on one fitted model: CPU against OpenVINO.

For every provider this ONNX Runtime offers among the CPU and OpenVINO ones, one session of
the same ``model.onnx`` with the product's session options (spinning off, sequential,
``--threads`` intra-op threads); then, interleaved round by round so that the machine's
noise falls on all alike:

- latency of one frame (median and 90th percentile over ``--rounds`` rounds);
- throughput with ``--workers`` threads sharing the session (as the inspection workers do);
- identity with the CPU provider on every image: the largest score difference (as a share
  of the distance from the card's median-good score to its threshold), the largest map
  difference, and verdicts that flip at the card's threshold;
- the time to create the session (OpenVINO compiles the graph then).

It needs only ``onnxruntime``, ``numpy`` and OpenCV, so it runs in an environment with the
``onnxruntime-openvino`` wheel in place of ``onnxruntime`` (the two cannot share one)::

    python -m venv /tmp/ov && /tmp/ov/bin/pip install onnxruntime-openvino opencv-python-headless
    /tmp/ov/bin/python benchmarks/bench_providers.py MODEL_DIR --images DIR
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

PROVIDERS = ("CPUExecutionProvider", "OpenVINOExecutionProvider")
SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def session(onnx: bytes, provider: str, threads: int) -> tuple[ort.InferenceSession, float]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    provider_options = [{"num_of_threads": threads}] if (
        provider == "OpenVINOExecutionProvider" and threads) else None
    start = time.perf_counter()
    made = ort.InferenceSession(onnx, sess_options=options, providers=[provider],
                                provider_options=provider_options)
    return made, time.perf_counter() - start


def images(folder: Path, limit: int) -> list[np.ndarray]:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)
    step = max(1, len(paths) // limit) if limit else 1
    frames = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths[::step][:limit or None]]
    return [f for f in frames if f is not None]


def run(made: ort.InferenceSession, frame: np.ndarray) -> tuple[float, np.ndarray]:
    score, amap = made.run(["score", "anomaly_map"], {"image": frame[None]})
    return float(score[0]), amap[0]


def throughput(made: ort.InferenceSession, frames: list[np.ndarray], workers: int,
               seconds: float) -> float:
    done = [0] * workers
    stop = time.perf_counter() + seconds

    def work(index: int) -> None:
        i = index
        while time.perf_counter() < stop:
            run(made, frames[i % len(frames)])
            done[index] += 1
            i += workers

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="a fitted model folder or its model.onnx")
    parser.add_argument("--images", type=Path, required=True, help="frames to score")
    parser.add_argument("--max-images", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads per run")
    parser.add_argument("--workers", type=int, default=2, help="threads sharing a session")
    parser.add_argument("--seconds", type=float, default=10.0, help="per throughput run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    path = args.model / "model.onnx" if args.model.is_dir() else args.model
    card_path = path.with_name("card.json")
    card = json.loads(card_path.read_text()) if card_path.is_file() else None
    onnx = path.read_bytes()
    frames = images(args.images, args.max_images)
    if not frames:
        sys.exit(f"no images under {args.images}")
    available = [p for p in PROVIDERS if p in ort.get_available_providers()]
    sessions, made_s = {}, {}
    for provider in available:
        sessions[provider], made_s[provider] = session(onnx, provider, args.threads)
        run(sessions[provider], frames[0])  # the first run compiles and allocates

    # Identity with the CPU provider on every image.
    outputs = {p: [run(s, f) for f in frames] for p, s in sessions.items()}
    reference = outputs["CPUExecutionProvider"]
    threshold = card["threshold"]["value"] if card else None
    spread = (threshold - card["score_scale"]["low"]) if card else None

    latencies: dict[str, list[float]] = {p: [] for p in sessions}
    for i in range(args.rounds):  # interleaved, round by round
        frame = frames[i % len(frames)]
        for provider, made in sessions.items():
            start = time.perf_counter()
            run(made, frame)
            latencies[provider].append((time.perf_counter() - start) * 1e3)
    rates = {p: [] for p in sessions}
    for _ in range(2):  # two alternating runs each
        for provider, made in sessions.items():
            rates[provider].append(throughput(made, frames, args.workers, args.seconds / 2))

    rows = []
    for provider in sessions:
        scores = np.array([s for s, _ in outputs[provider]])
        ref_scores = np.array([s for s, _ in reference])
        score_diff = float(np.abs(scores - ref_scores).max())
        map_diff = max(float(np.abs(m - r).max()) for (_, m), (_, r)
                       in zip(outputs[provider], reference, strict=True))
        flips = int(((scores >= threshold) != (ref_scores >= threshold)).sum()) if card else None
        rows.append({
            "provider": provider,
            "session_s": round(made_s[provider], 2),
            "median_ms": round(statistics.median(latencies[provider]), 2),
            "p90_ms": round(float(np.percentile(latencies[provider], 90)), 2),
            "frames_per_s": round(sum(rates[provider]) / len(rates[provider]), 1),
            "max_score_diff": score_diff,
            "score_diff_of_spread": score_diff / spread if spread else None,
            "max_map_diff": map_diff,
            "verdict_flips": flips,
        })

    size = frames[0].shape
    print(f"onnxruntime {ort.__version__} on {platform.machine()}, {len(frames)} frames of "
          f"{size[1]}x{size[0]}, {args.threads} intra-op threads, {args.workers} workers, "
          f"{args.rounds} interleaved rounds")
    print("| provider | session s | median ms | p90 ms | frames/s | max score diff "
          "(of median-to-threshold) | max map diff | verdict flips |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        share = (f" ({r['score_diff_of_spread']:.2%})"
                 if r["score_diff_of_spread"] is not None else "")
        print(f"| {r['provider']} | {r['session_s']} | {r['median_ms']} | {r['p90_ms']} | "
              f"{r['frames_per_s']} | {r['max_score_diff']:.3g}{share} | "
              f"{r['max_map_diff']:.3g} | {r['verdict_flips']} |")
    if args.json:
        args.json.write_text(json.dumps({"onnxruntime": ort.__version__, "rows": rows},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
