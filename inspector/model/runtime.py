"""ONNX Runtime sessions: execution providers chosen from what this box has, threads from config."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from inspector.errors import ModelError

logger = logging.getLogger(__name__)

# Preference order for "auto": GPUs first, the CPU always last. OpenVINO is used only
# when named ("openvino"): on the CPU it was measured slower than ONNX Runtime's own
# provider on the same model (1.5x the latency with 2 threads, a quarter of the
# throughput with 2 workers; benchmarks/bench_providers.py, docs/benchmarks.md).
AUTO_ORDER = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)
_SHORT_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


def choose_providers(
    requested: Sequence[str] = ("auto",), available: Sequence[str] | None = None
) -> list[str]:
    """Execution providers to use, best first; the CPU provider is always the final fallback.

    ``requested`` holds ``"auto"`` or names such as ``"cuda"`` / ``"CUDAExecutionProvider"``.
    """
    available = list(ort.get_available_providers() if available is None else available)
    if list(requested) == ["auto"]:
        chosen = [name for name in AUTO_ORDER if name in available]
    else:
        chosen = []
        for name in requested:
            full = _SHORT_NAMES.get(name.lower(), name)
            if full not in available:
                raise ModelError(
                    f"execution provider {name!r} is not available here; available: "
                    f"{', '.join(available)}"
                )
            chosen.append(full)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def create_session(
    model: str | Path | bytes,
    intra_op_threads: int = 0,
    providers: Sequence[str] = ("auto",),
) -> ort.InferenceSession:
    """An inference session tuned for a steady one-frame-at-a-time load on an edge box."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle worker threads sleep instead of spinning: on a small edge CPU the capture,
    # recorder and web threads need those cores between frames.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    chosen = choose_providers(providers)
    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, sess_options=options, providers=chosen)
    logger.info("ONNX Runtime session on %s", ", ".join(session.get_providers()))
    return session


@dataclass(frozen=True)
class ThreadPlan:
    """How the inspection core spreads model runs over the box."""

    workers: int  # model runs side by side, each in its own thread
    intra_op_threads: int  # threads inside one run; 0 leaves it to ONNX Runtime


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def plan_threads(
    workers: int | str,
    intra_op_threads: int,
    providers: Sequence[str] = ("auto",),
    cores: int | None = None,
    available: Sequence[str] | None = None,
) -> ThreadPlan:
    """Resolve ``"auto"`` workers and ``0`` intra-op threads for this box.

    On the CPU a small CNN spreads poorly over cores, and a run split over
    threads waits for the last of them, which on a small box busy with capture
    and recording is often late. Frames side by side on one core each gave more
    frames per second and a steadier latency tail, for one camera and for two
    (docs/benchmarks.md). So "auto" is one worker per core, and workers set by
    hand share the cores out. An accelerator runs one frame at a time; it gets
    one worker.
    """
    cores = cores or usable_cores()
    on_cpu = choose_providers(providers, available)[0] == "CPUExecutionProvider"
    if workers == "auto":
        workers = cores if on_cpu else 1
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer or 'auto', got {workers!r}")
    if intra_op_threads == 0 and on_cpu and workers > 1:
        intra_op_threads = max(1, cores // workers)
    return ThreadPlan(workers, intra_op_threads)
