"""Where a frame's milliseconds go inside the fitted model graph (ONNX Runtime's profiler).

Fits a model with the default options on ``train/good`` of the dataset (or loads
``--model``), runs it on one frame with ONNX Runtime's profiler on, and sums node times
per stage, in graph order:

- preprocess: uint8 frame to the normalised model input (cast, resize, scale);
- backbone: the pretrained CNN;
- features: neighbourhood pooling, the PCA projection and upsampling to one patch grid;
- search: nearest-neighbour distances to the memory bank;
- map: the patch map upsampled to the model input and smoothed;
- score: the mean of the map's top share;
- full-size map: the anomaly map resized to the frame for overlays and regions;
- layout reorders: ONNX Runtime's conversions to and from its blocked (NCHWc) layout.

    python benchmarks/profile_model.py                          # bottle, defaults
    python benchmarks/profile_model.py --option search_dims=None
    python benchmarks/profile_model.py --model models/demo --frame 512
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from inspector.fitting import FitOptions, fit
from inspector.imaging import list_images
from inspector.model import load_model

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "mvtec_bottle_512"
STAGES = ("preprocess", "backbone", "features", "search", "map", "score", "full-size map")


def parse_option(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, None if value == "None" else value


def node_stages(model: onnx.ModelProto) -> dict[str, str]:
    """Each node's stage, from where it sits between the graph's named waypoints."""
    stages: dict[str, str] = {}
    stage = "preprocess"
    after = {"projected": "search", "patch_distance": "map", "smoothed": "score",
             "score": "full-size map"}
    for node in model.graph.node:
        if node.name.startswith("backbone/"):
            stage = "backbone"
        elif stage == "backbone":
            stage = "features"
        stages[node.name] = stage
        for output in node.output:
            hint = output.rsplit("_", 1)[0] if output != "score" else output
            stage = after.get(hint, stage)
    return stages


def stage_of(name: str, stages: dict[str, str]) -> str:
    """The stage of a node as ONNX Runtime names it after its own rewrites."""
    name = name.removesuffix("_nchwc")  # the blocked-layout (NCHWc) copy of a node
    if name in stages:
        return stages[name]
    if name.startswith("backbone/"):  # fused backbone nodes, named after an output
        return "backbone"
    if name.startswith("Reorder"):
        return "layout reorders"
    return "other"


def profile(model_bytes: bytes, frame: np.ndarray, threads: int, runs: int,
            workdir: Path) -> tuple[dict[str, float], float]:
    """Mean ms per run for each stage, and the mean whole run."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_profiling = True
    options.profile_file_prefix = str(workdir / "profile")
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    warmup = 10
    for _ in range(warmup + runs):
        session.run(None, {"image": frame})
    events = json.loads(Path(session.end_profiling()).read_text())
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                     if e.get("cat") == "Session" and e["name"] == "model_run")[warmup:]
    start = windows[0][0]
    stages = node_stages(onnx.load_from_string(model_bytes))
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") != "Node" or event["ts"] < start:
            continue
        if not event["name"].endswith("_kernel_time"):
            continue
        totals[stage_of(event["name"].removesuffix("_kernel_time"), stages)] += (
            event["dur"] / 1e3 / runs)
    whole = sum(end - begin for begin, end in windows) / 1e3 / len(windows)
    return dict(totals), whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", type=Path, help="a fitted model folder instead of fitting one")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="override one fit option (repeatable)")
    parser.add_argument("--frame", type=int, help="square frame side (default: the model's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            loaded = load_model(args.model)
            card, model_bytes = loaded.card, loaded.onnx
        else:
            options = FitOptions(threads=args.threads, **dict(map(parse_option, args.option)))
            result = fit(list_images(args.data / "train" / "good"), None, options)
            card, model_bytes = result.card, result.onnx
        height, width = card.input.size
        if args.frame:
            height = width = args.frame
        frame = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), np.uint8)
        stages, whole = profile(model_bytes, frame, args.threads, args.runs, Path(tmp))

    print(f"model input {card.input.size[0]}x{card.input.size[1]}, frame {height}x{width}, "
          f"bank {card.hyperparameters.get('bank_size')}, {args.threads} threads, "
          f"{args.runs} runs")
    print("| stage | ms | share |")
    print("|---|---|---|")
    nodes = sum(stages.values())
    for stage in [*STAGES, "layout reorders", "other"]:
        if stage in stages:
            print(f"| {stage} | {stages[stage]:.2f} | {stages[stage] / nodes:.0%} |")
    print(f"| all nodes | {nodes:.2f} | |")
    print(f"| whole run (with ONNX Runtime's own overhead) | {whole:.2f} | |")
    if args.json:
        args.json.write_text(json.dumps({"stages_ms": stages, "run_ms": whole,
                                         "input": card.input.size, "frame": [height, width]},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
