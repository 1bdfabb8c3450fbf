"""A fitted model as one ONNX graph: uint8 frames in, anomaly map and image score out.

::

    image  uint8 (N, H, W, 3), colour order as the card says (BGR by default)
      -> float, NCHW, bilinear antialiased resize to the model size (h, w), colour order,
         normalisation
      -> backbone -> 3x3 average pooling per feature map (each patch sees its neighbours)
      -> each map's part of the 1x1 projection (PCA of the training patches), stride-16
         maps resized onto the stride-8 grid, summed  ... "features": fitting stops here
         (the first pass of a fit takes the pooled maps concatenated, unprojected)
      -> patch distance: to the nearest memory-bank entry (patchcore)
                         or Mahalanobis to the per-location Gaussian (padim)
      -> patch map resized to (h, w), Gaussian smoothing   -> score = mean of its top share
      -> map resized to (H, W)                             -> anomaly_map

Everything that decides a score lives in the graph, so a model scores an image
the same way in ``inspector predict``, in evaluation and on the line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from inspector.fitting.backbones import Backbone

OPSET = 18  # Resize with antialias
IR_VERSION = 9
INPUT = "image"
OUTPUTS = {
    "score": "float32 (N,): image anomaly score, the mean of the highest top_fraction "
    "(see hyperparameters) of the smoothed map at the model size; reject when "
    "score >= threshold",
    "anomaly_map": "float32 (N, H, W): smoothed patch anomaly at the input's own size",
}


@dataclass(frozen=True)
class FeatureSpec:
    """How frames become patch features: input size, colour order, layers, smoothing."""

    size: tuple[int, int]  # (height, width) frames are resized to inside the graph
    layers: tuple[str, ...]
    channel_order: str = "BGR"  # of the uint8 input
    sigma: float = 4.0  # Gaussian smoothing of the map, in pixels at ``size``
    top_fraction: float = 0.01  # the score is the mean of this share of the highest map pixels

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of stride-8 patches."""
        return -(-self.size[0] // 8), -(-self.size[1] // 8)

    @property
    def pixels(self) -> int:
        return self.size[0] * self.size[1]


class _Builder:
    """Collects nodes and constants with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value: np.ndarray | Sequence[float] | Sequence[int], hint: str = "c") -> str:
        array = np.asarray(value)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, **attrs) -> str:
        out = self.name(hint or op_type.lower())
        # Named after its output, so profiles and error messages say which step it is.
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out


def _resize(b: _Builder, x: str, height_width: str, antialias: int = 0) -> str:
    """Bilinear resize of NCHW ``x`` to ``height_width`` (an int64 pair tensor).

    Full four-element sizes rather than the ``axes`` attribute: ONNX Runtime's layout
    optimiser mishandles ``axes`` in quantized (QDQ) graphs.
    """
    batch_channels = b.op("Slice", [b.op("Shape", [x]), b.const(np.array([0], np.int64)),
                                    b.const(np.array([2], np.int64))])
    sizes = b.op("Concat", [batch_channels, height_width], axis=0)
    return b.op("Resize", [x, "", "", sizes], mode="linear", antialias=antialias,
                coordinate_transformation_mode="half_pixel")


def _preprocess(b: _Builder, backbone: Backbone, spec: FeatureSpec) -> str:
    x = b.op("Cast", [INPUT], to=TensorProto.FLOAT)
    x = b.op("Transpose", [x], perm=[0, 3, 1, 2])
    x = _resize(b, x, b.const(np.array(spec.size, np.int64)), antialias=1)
    if spec.channel_order != backbone.channel_order:
        x = b.op("Gather", [x, b.const(np.array([2, 1, 0], np.int64))], axis=1)
    mean = np.array(backbone.mean, np.float32).reshape(1, 3, 1, 1)
    inv_std = (1.0 / np.array(backbone.std, np.float32)).reshape(1, 3, 1, 1)
    x = b.op("Sub", [x, b.const(mean)])
    return b.op("Mul", [x, b.const(inv_std)], hint="normalised")


def _features(b: _Builder, backbone: Backbone, spec: FeatureSpec,
              projection: tuple[np.ndarray, np.ndarray] | None = None) -> str:
    """Append preprocessing and the backbone; return the pooled, concatenated feature map,
    or with ``projection`` its PCA projection (N, D, g, g).

    The projection of the concatenated map is the sum of each layer's own projection, and
    pooling and resizing are linear per channel, so each layer is projected where that is
    cheapest: before pooling and upsampling when it has more channels than the projection
    (the stride-16 layer: a quarter of the positions), after pooling otherwise.
    """
    normalised = _preprocess(b, backbone, spec)
    net = onnx.load_from_string(backbone.onnx)
    prefix = "backbone/"
    rename = {i.name: normalised for i in net.graph.input}
    for node in net.graph.node:
        node.name = prefix + node.name
        node.input[:] = [rename.get(n, prefix + n if n else n) for n in node.input]
        node.output[:] = [prefix + n for n in node.output]
        b.nodes.append(node)
    for init in net.graph.initializer:
        init.name = prefix + init.name
        b.inits.append(init)
    grid = b.const(np.array(spec.grid, np.int64))
    maps = []
    offset = 0
    for layer in spec.layers:
        x, channels = prefix + layer, backbone.channels[layer]
        weight = None
        if projection is not None:
            rows = projection[1][offset : offset + channels]  # this layer's (C_l, D) part
            weight = b.const(np.ascontiguousarray(rows.T)[:, :, None, None].astype(np.float32))
            offset += channels
        project_first = weight is not None and channels > projection[1].shape[1]
        if project_first:
            x = b.op("Conv", [x, weight])
        x = b.op("AveragePool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
                 count_include_pad=0)
        if weight is not None and not project_first:
            x = b.op("Conv", [x, weight])
        if backbone.strides[layer] != 8:
            x = _resize(b, x, grid)
        maps.append(x)
    if projection is None:
        return maps[0] if len(maps) == 1 else b.op("Concat", maps, axis=1)
    mean, components = projection
    bias = -(mean.astype(np.float32) @ components.astype(np.float32))
    total = maps[0]
    for x in maps[1:]:
        total = b.op("Add", [total, x])
    return b.op("Add", [total, b.const(bias.reshape(1, -1, 1, 1))], hint="projected")


def _nearest_distance(b: _Builder, x: str, bank: np.ndarray, grid: tuple[int, int],
                      search_dims: int | None = None, candidates: int = 8,
                      search_block: int = 1) -> str:
    """Euclidean distance of each patch to its nearest bank entry: (N, 1, g, g).

    ``|q - m|^2 = |q|^2 - 2 q.m + |m|^2``. Each patch gets a trailing 1 and each bank
    entry a trailing ``|m|^2``, so one MatMul yields ``-2 q.m + |m|^2`` for every pair;
    the minimum runs over its contiguous last axis, and ``|q|^2``, the same for every
    entry, is added after it.

    With ``search_dims``, that search runs on the first ``search_dims`` features only (the
    projection's leading, highest-variance directions) to find ``candidates`` entries per
    patch; the distance is then exact over every feature for those few. Most of the cost
    scales with ``search_dims``, while low-variance directions, where a defect often shows,
    still count in the score. The candidates are the nearest entry in each of
    ``candidates`` equal, randomly drawn parts of the bank: one ArgMin over the parts costs
    a quarter of a TopK over the whole bank, and the nearest entry overall is always one.

    With ``search_block`` k > 1 (two-stage only, on a grid divisible by k), the candidates
    are searched once per k x k block of patches, for the block's mean, and each patch of
    the block measures its exact distance to those: the search's cost falls k² times, and
    a patch's distance is exact to the nearest of its block's candidates.
    """
    bank = bank.astype(np.float32)
    dims = bank.shape[1]
    flat = b.op("Reshape", [x, b.const(np.array([0, dims, -1], np.int64))])
    patches = b.op("Transpose", [flat], perm=[0, 2, 1])  # (N, P, D)
    last = b.const(np.array([-1], np.int64))
    two_stage = search_dims is not None and search_dims < dims
    if two_stage:
        # Equal parts, each a random draw; padded with repeated entries, which change no
        # distance.
        parts = min(candidates, len(bank))
        part = -(-len(bank) // parts)
        order = np.random.default_rng(0).permutation(len(bank))
        bank = bank[np.resize(order, parts * part)]
    search = bank[:, :search_dims] if two_stage else bank
    block = search_block if two_stage and grid[0] % search_block == 0 and \
        grid[1] % search_block == 0 else 1
    queries = patches
    if block > 1:  # one query per block: the mean of its patches
        pooled = b.op("AveragePool", [x], kernel_shape=[block, block], strides=[block, block])
        pooled = b.op("Reshape", [pooled, b.const(np.array([0, dims, -1], np.int64))])
        queries = b.op("Transpose", [pooled], perm=[0, 2, 1])  # (N, Q, D)
    if two_stage:
        queries = b.op("Slice", [queries, b.const(np.array([0], np.int64)),
                                 b.const(np.array([search_dims], np.int64)), last])
    extended = b.op("Pad", [queries, b.const(np.array([0, 0, 0, 0, 0, 1], np.int64)),
                            b.const(np.array(1.0, np.float32))], mode="constant")
    table = np.concatenate([-2.0 * search, (search * search).sum(axis=1, keepdims=True)], axis=1)
    cross = b.op("MatMul", [extended, b.const(np.ascontiguousarray(table.T))])  # (N, P, M)
    if two_stage:
        split = b.op("Reshape", [cross, b.const(np.array([0, 0, parts, part], np.int64))])
        nearest_in_part = b.op("ArgMin", [split], axis=-1, keepdims=0)  # (N, P, K)
        index = b.op("Add", [nearest_in_part, b.const(np.arange(parts, dtype=np.int64) * part)],
                     hint="candidates")
        gathered = b.op("Gather", [b.const(bank), index], axis=0)  # (N, Q, K, D)
        if block == 1:
            query = b.op("Unsqueeze", [patches, b.const(np.array([2], np.int64))])
            squared = b.op("ReduceSumSquare", [b.op("Sub", [gathered, query]), last],
                           keepdims=0)
            squared = b.op("ReduceMin", [squared, last], keepdims=0)  # (N, P)
        else:
            squared = _block_distances(b, x, gathered, grid, block, dims)
    else:
        nearest = b.op("ReduceMin", [cross, last], keepdims=0)
        squared = b.op("Add", [nearest, b.op("ReduceSumSquare", [patches, last], keepdims=0)])
    distance = b.op("Sqrt", [b.op("Relu", [squared])])
    return b.op("Reshape", [distance, b.const(np.array([-1, 1, *grid], np.int64))],
                hint="patch_distance")


def _block_distances(b: _Builder, x: str, gathered: str, grid: tuple[int, int], block: int,
                     dims: int) -> str:
    """Squared distance of each patch to the nearest of its block's candidates, (N, P) in
    the grid's row-major order; ``gathered`` holds each block's candidates (N, Q, K, D)."""
    gh, gw = grid[0] // block, grid[1] // block
    grouped = b.op("Reshape", [x, b.const(np.array([0, dims, gh, block, gw, block], np.int64))])
    grouped = b.op("Transpose", [grouped], perm=[0, 2, 4, 3, 5, 1])  # (N, gh, gw, k, k, D)
    grouped = b.op("Reshape", [grouped, b.const(np.array([0, gh * gw, block * block, 1, dims],
                                                         np.int64))])  # (N, Q, k², 1, D)
    candidates = b.op("Unsqueeze", [gathered, b.const(np.array([2], np.int64))])  # (N,Q,1,K,D)
    last = b.const(np.array([-1], np.int64))
    squared = b.op("ReduceSumSquare", [b.op("Sub", [candidates, grouped]), last], keepdims=0)
    squared = b.op("ReduceMin", [squared, last], keepdims=0)  # (N, Q, k²)
    squared = b.op("Reshape", [squared, b.const(np.array([0, gh, gw, block, block], np.int64))])
    squared = b.op("Transpose", [squared], perm=[0, 1, 3, 2, 4])  # (N, gh, k, gw, k)
    return b.op("Reshape", [squared, b.const(np.array([0, -1], np.int64))])


def _mahalanobis(b: _Builder, x: str, mean: np.ndarray, inv_cov: np.ndarray,
                 grid: tuple[int, int]) -> str:
    """Mahalanobis distance of each patch to its location's Gaussian: (N, 1, g, g)."""
    patches, dims = mean.shape
    flat = b.op("Reshape", [x, b.const(np.array([0, dims, patches], np.int64))])
    per_location = b.op("Transpose", [flat], perm=[2, 0, 1])  # (P, N, D)
    diff = b.op("Sub", [per_location, b.const(mean[:, None, :].astype(np.float32))])
    weighted = b.op("MatMul", [diff, b.const(inv_cov.astype(np.float32))])  # (P, N, D)
    axis2 = b.const(np.array([2], np.int64))
    squared = b.op("ReduceSum", [b.op("Mul", [weighted, diff]), axis2], keepdims=0)  # (P, N)
    squared = b.op("Relu", [b.op("Transpose", [squared], perm=[1, 0])])
    shaped = b.op("Reshape", [squared, b.const(np.array([-1, 1, *grid], np.int64))])
    return b.op("Sqrt", [shaped], hint="patch_distance")


def gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(np.ceil(3 * sigma)))
    xs = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (xs / sigma) ** 2)
    return (kernel / kernel.sum()).astype(np.float32)


def _map_and_score(b: _Builder, patch_map: str, spec: FeatureSpec) -> None:
    x = _resize(b, patch_map, b.const(np.array(spec.size, np.int64)))
    if spec.sigma > 0:
        kernel = gaussian_kernel(spec.sigma)
        r = len(kernel) // 2
        x = b.op("Pad", [x, b.const(np.array([0, 0, r, r, 0, 0, r, r], np.int64))], mode="reflect")
        x = b.op("Conv", [x, b.const(kernel.reshape(1, 1, 1, -1))])
        x = b.op("Conv", [x, b.const(kernel.reshape(1, 1, -1, 1))], hint="smoothed")
    # Mean of the top pixels rather than the single maximum: one noisy patch moves it
    # less, while a small defect's smoothed blob still fills the top share.
    top = max(1, round(spec.top_fraction * spec.pixels))
    flat = b.op("Reshape", [x, b.const(np.array([0, -1], np.int64))])
    values = b.op("TopK", [flat, b.const(np.array([top], np.int64))], axis=-1, largest=1, sorted=0)
    b.nodes[-1].output.append(b.name("topk_indices"))
    b.nodes.append(helper.make_node(
        "ReduceMean", [values, b.const(np.array([1], np.int64))], ["score"], keepdims=0))
    shape = b.op("Shape", [INPUT])
    input_hw = b.op("Slice", [shape, b.const(np.array([1], np.int64)),
                              b.const(np.array([3], np.int64))])
    full = _resize(b, x, input_hw)
    b.nodes.append(
        helper.make_node("Squeeze", [full, b.const(np.array([1], np.int64))], ["anomaly_map"])
    )


def _model(b: _Builder, outputs: list[onnx.ValueInfoProto], name: str) -> onnx.ModelProto:
    image = helper.make_tensor_value_info(INPUT, TensorProto.UINT8, ["N", "H", "W", 3])
    graph = helper.make_graph(b.nodes, name, [image], outputs, initializer=b.inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
        producer_name="edge-inspector",
    )
    onnx.checker.check_model(model)
    return model


def feature_model(backbone: Backbone, spec: FeatureSpec,
                  projection: tuple[np.ndarray, np.ndarray] | None = None) -> onnx.ModelProto:
    """The graph up to patch features, ``features`` (N, C or D, g, g), for fitting."""
    b = _Builder()
    x = _features(b, backbone, spec, projection)
    b.nodes.append(helper.make_node("Identity", [x], ["features"]))
    out = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", "C", "g", "g"])
    return _model(b, [out], f"{backbone.name}-features")


def scoring_model(
    backbone: Backbone,
    spec: FeatureSpec,
    projection: tuple[np.ndarray, np.ndarray],
    *,
    bank: np.ndarray | None = None,
    gaussian: tuple[np.ndarray, np.ndarray] | None = None,
    search_dims: int | None = None,
    candidates: int = 8,
    search_block: int = 1,
    name: str = "inspection-model",
) -> onnx.ModelProto:
    """The complete fitted model: a memory ``bank`` (M, D) for patchcore, or the per-location
    ``gaussian`` (mean (P, D), inverse covariance (P, D, D)) for padim."""
    if (bank is None) == (gaussian is None):
        raise ValueError("give exactly one of bank (patchcore) or gaussian (padim)")
    b = _Builder()
    x = _features(b, backbone, spec, projection)
    if bank is not None:
        patch_map = _nearest_distance(b, x, bank, spec.grid, search_dims, candidates,
                                      search_block)
    else:
        patch_map = _mahalanobis(b, x, *gaussian, grid=spec.grid)
    _map_and_score(b, patch_map, spec)
    outputs = [
        helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
        helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["N", "H", "W"]),
    ]
    return _model(b, outputs, name)
