"""The backbone alone under every ONNX Runtime configuration worth trying on this CPU.

The product runs its models with graph optimisation ORT_ENABLE_ALL, thread spinning
off and the optimisation done when the session is made (``inspector/model/runtime.py``).
This times the exported backbone (batch 1, a ready float32 tensor) against the
alternatives, each in its own session, interleaved round by round so the machine's
noise hits all alike, and says how far the product's configuration is from the fastest:

- optimisation levels: ORT_DISABLE_ALL, BASIC, EXTENDED, LAYOUT (adds the NCHWc layout
  of ONNX Runtime's x86 kernels) and ALL;
- the optimised graph saved once and loaded with optimisation off (what a fit could
  store), with the time each session takes to make;
- thread spinning on: timed in blocks of its own, alternating with the product's, since
  a pool left spinning after its run steals the cores from the next session;
- int8: the backbone's convolutions quantized (static QDQ, per-channel weights, uint8
  activations; ONNX Runtime then runs them in NHWC layout itself). Calibrated on random
  tensors: enough to time it, not to judge its accuracy (``inspector quantize`` and
  ``docs/accuracy.md`` do that on real images).

ONNX Runtime's CPU provider has no NHWC float convolution to choose; the NCHWc layout
above is its x86 layout optimisation.

    python benchmarks/bench_backbone.py                          # Lite0 at 256x256, 2 threads
    python benchmarks/bench_backbone.py --size 320 --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from bench_model import interleaved
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from inspector.fitting import load_backbone

LEVELS = {
    "disable_all": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "layout": ort.GraphOptimizationLevel.ORT_ENABLE_LAYOUT,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
PRODUCT = "all, spinning off (the product)"


def session(model: bytes | str, threads: int, level: str = "all", spinning: bool = False,
            save_to: Path | None = None) -> tuple[ort.InferenceSession, float]:
    """A session and the seconds it took to make."""
    options = ort.SessionOptions()
    options.graph_optimization_level = LEVELS[level]
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if save_to is not None:
        options.optimized_model_filepath = str(save_to)
    started = time.perf_counter()
    made = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return made, time.perf_counter() - started


class _RandomTensors(CalibrationDataReader):
    def __init__(self, name: str, shape: tuple[int, ...], count: int = 8) -> None:
        rng = np.random.default_rng(0)
        self._feeds = iter([{name: rng.standard_normal(shape, dtype=np.float32)}
                            for _ in range(count)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    backbone = load_backbone(args.backbone)
    shape = (1, 3, args.size, args.size)
    feed = {"image": np.random.default_rng(1).standard_normal(shape, dtype=np.float32)}
    made_s: dict[str, float] = {}
    runs: dict[str, tuple[ort.InferenceSession, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for level in LEVELS:
            name = PRODUCT if level == "all" else f"{level}, spinning off"
            made, made_s[name] = session(backbone.onnx, args.threads, level)
            runs[name] = (made, feed)
        saved = Path(tmp) / "optimised.onnx"
        session(backbone.onnx, args.threads, "all", save_to=saved)
        name = "saved optimised graph, loaded with optimisation off"
        made, made_s[name] = session(str(saved), args.threads, "disable_all")
        runs[name] = (made, feed)
        float_path, int8_path = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        float_path.write_bytes(backbone.onnx)
        logging.getLogger().setLevel(logging.ERROR)  # its advice to pre-process, each run
        quantize_static(str(float_path), str(int8_path), _RandomTensors("image", shape),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv"], calibrate_method=CalibrationMethod.MinMax)
        name = "int8 (QDQ per-channel), all, spinning off"
        made, made_s[name] = session(str(int8_path), args.threads)
        runs[name] = (made, feed)
        ms = interleaved(runs, args.rounds)

        # Spinning on, in blocks alternating with the product's configuration.
        spinning, _ = session(backbone.onnx, args.threads, spinning=True)
        product = runs[PRODUCT][0]
        blocks: dict[str, list[float]] = {"on": [], "off": []}
        block_rounds = max(10, args.rounds // 4)
        for _ in range(4):
            for key, made in (("off", product), ("on", spinning)):
                blocks[key].append(interleaved({key: (made, feed)}, block_rounds)[key])
        name = "all, spinning on"
        ms[name] = float(np.median(blocks["on"]))
        made_s[name] = 0.0
        product_in_blocks = float(np.median(blocks["off"]))

    fastest = min(ms.values())
    threads = f"{args.threads} thread" + ("s" if args.threads != 1 else "")
    print(f"{args.backbone} at {args.size}x{args.size}, batch 1, {threads}, "
          f"{args.rounds} rounds; ONNX Runtime {ort.__version__}")
    print("| configuration | median ms | / fastest | session made in s |")
    print("|---|---|---|---|")
    rows = []
    for name, value in sorted(ms.items(), key=lambda item: item[1]):
        rows.append({"configuration": name, "ms": round(value, 2),
                     "vs_fastest": round(value / fastest, 2), "made_s": round(made_s[name], 3)})
        made = f"{made_s[name]:.3f}" if made_s[name] else "–"
        print(f"| {name} | {value:.2f} | {value / fastest:.2f} | {made} |")
    print(f"\nspinning on against off, in alternating blocks: {ms['all, spinning on']:.2f} "
          f"against {product_in_blocks:.2f} ms")
    verdict = "met" if ms[PRODUCT] <= 1.2 * fastest else "not met"
    print(f"the product's configuration within 1.2x of the fastest: {verdict} "
          f"({ms[PRODUCT] / fastest:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "product_in_blocks": product_in_blocks},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
