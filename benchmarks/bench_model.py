"""Fitted model vs its backbone alone, and the time a fit takes.

For each backbone: fit a model with the default options on ``train/good`` of the
dataset (timed), quantize a copy to int8, then time bare ONNX Runtime sessions at
batch 1 and 2 threads (thread spinning off, so idle sessions leave the cores alone),
interleaved round by round so machine noise hits all alike:

- backbone: the exported backbone alone on a ready float32 tensor of the model input's size
- model: the fitted graph on a uint8 frame of that size (preprocessing,
  backbone, projection, nearest-neighbour search, smoothing, score);
- model int8: the same with the backbone quantized;
- model variant (with ``--option``): a second fit with those options, timed beside them.

    python benchmarks/bench_model.py                       # ../shared/datasets/mvtec_bottle_512
    python benchmarks/bench_model.py --data sample_images  # anywhere
    python benchmarks/bench_model.py --backbones efficientnet_lite0 --option search_block=2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from inspector.fitting import FitOptions, fit, load_backbone, quantize_model
from inspector.imaging import list_images, read_image
from inspector.model import load_model

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "mvtec_bottle_512"


def session(model: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Three sessions take turns; a pool left spinning after its run would steal the
    # cores from the next session's run.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def interleaved(runs: dict[str, tuple[ort.InferenceSession, dict]], rounds: int) -> dict:
    for sess, feed in runs.values():  # warm-up
        for _ in range(5):
            sess.run(None, feed)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (sess, feed) in runs.items():
            started = time.perf_counter()
            sess.run(None, feed)
            times[name].append((time.perf_counter() - started) * 1e3)
    return {name: float(np.median(t)) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--backbones", nargs="+", default=["mobilenet_v2", "efficientnet_lite0"])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="fit a variant with these FitOptions and time it beside them")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    variant = {key: json.loads(value) for key, _, value in
               (text.partition("=") for text in args.option)}

    paths = list_images(args.data / "train" / "good")
    frame = np.ascontiguousarray(read_image(paths[0]))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.backbones:
            options = FitOptions(backbone=name, threads=args.threads)
            started = time.perf_counter()
            result = fit(paths, Path(tmp) / name, options)
            fit_seconds = time.perf_counter() - started
            quantize_model(Path(tmp) / name, paths[:32], Path(tmp) / f"{name}-int8")
            height, width = result.card.input.size  # the backbone at the model's own input
            small = np.ascontiguousarray(cv2.resize(frame, (width, height))[None])
            tensor = np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32)
            runs = {
                "backbone": (session(load_backbone(name).onnx, args.threads), {"image": tensor}),
                "model": (session(result.onnx, args.threads), {"image": small}),
                "model int8": (session(load_model(Path(tmp) / f"{name}-int8").onnx,
                                       args.threads), {"image": small}),
            }
            if variant:
                other = fit(paths, Path(tmp) / f"{name}-variant",
                            FitOptions(backbone=name, threads=args.threads, **variant))
                runs["model variant"] = (session(other.onnx, args.threads), {"image": small})
            ms = interleaved(runs, args.rounds)
            rows.append({
                "backbone": name, "train_images": len(paths),
                "bank": result.card.hyperparameters["bank_size"],
                "input": f"{height}x{width}",
                "fit_s": round(fit_seconds, 1), **{f"{k} ms": round(v, 2) for k, v in ms.items()},
                "model/backbone": round(ms["model"] / ms["backbone"], 2),
                "int8/backbone": round(ms["model int8"] / ms["backbone"], 2),
                **({"variant/backbone": round(ms["model variant"] / ms["backbone"], 2)}
                   if variant else {}),
            })
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
