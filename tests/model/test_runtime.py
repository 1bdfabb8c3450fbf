"""Execution provider choice and session creation on a real (tiny) ONNX model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from inspector.errors import ModelError
from inspector.model import ThreadPlan, create_session, plan_threads
from inspector.model.runtime import choose_providers

GPU_BOX = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("requested", "available", "expected"),
    [
        (["auto"], ["CPUExecutionProvider"], ["CPUExecutionProvider"]),
        (["auto"], GPU_BOX, GPU_BOX),
        # OpenVINO only when asked for: slower than the CPU provider where measured.
        (
            ["auto"],
            ["OpenVINOExecutionProvider", "CPUExecutionProvider", "AzureExecutionProvider"],
            ["CPUExecutionProvider"],
        ),
        (["openvino"], ["OpenVINOExecutionProvider", "CPUExecutionProvider"],
         ["OpenVINOExecutionProvider", "CPUExecutionProvider"]),
        (["cuda"], GPU_BOX, ["CUDAExecutionProvider", "CPUExecutionProvider"]),
        (["CPUExecutionProvider"], GPU_BOX, ["CPUExecutionProvider"]),
    ],
)
def test_choose_providers(requested: list[str], available: list[str], expected: list[str]) -> None:
    assert choose_providers(requested, available) == expected


def test_unavailable_provider_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="'cuda' is not available here"):
        choose_providers(["cuda"], ["CPUExecutionProvider"])


CPU_BOX = ["CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("workers", "intra", "cores", "available", "expected"),
    [
        ("auto", 0, 2, CPU_BOX, ThreadPlan(2, 1)),  # a worker per core, one thread each
        ("auto", 0, 1, CPU_BOX, ThreadPlan(1, 0)),
        ("auto", 3, 4, CPU_BOX, ThreadPlan(4, 3)),  # threads set by hand: kept
        ("auto", 0, 8, GPU_BOX, ThreadPlan(1, 0)),  # an accelerator runs one frame at a time
        (1, 0, 8, CPU_BOX, ThreadPlan(1, 0)),  # one worker: ONNX Runtime takes every core
        (3, 0, 8, CPU_BOX, ThreadPlan(3, 2)),  # workers set by hand share the cores out
        (16, 0, 8, CPU_BOX, ThreadPlan(16, 1)),
    ],
)
def test_plan_threads(workers: int | str, intra: int, cores: int, available: list[str],
                      expected: ThreadPlan) -> None:
    assert plan_threads(workers, intra, ("auto",), cores, available) == expected


def test_session_runs_a_real_model() -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = create_session(model.SerializeToString(), intra_op_threads=1)
    (out,) = session.run(None, {"x": np.ones((2, 3), np.float32)})
    np.testing.assert_array_equal(out, np.full((2, 3), 2, np.float32))
    assert session.get_providers()[-1] == "CPUExecutionProvider"
    onnx.checker.check_model(model)
