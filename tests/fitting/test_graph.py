"""Graph pieces on their own, run with ONNX Runtime against plain NumPy."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from inspector.fitting.graph import OPSET, _Builder, _nearest_distance

GRID = (4, 5)


def _run_nearest(bank: np.ndarray, x: np.ndarray, search_dims: int | None,
                 candidates: int, search_block: int = 1) -> np.ndarray:
    b = _Builder()
    out = _nearest_distance(b, "x", bank, tuple(x.shape[2:]), search_dims, candidates,
                            search_block)
    graph = helper.make_graph(
        b.nodes, "nearest", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=9)
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _brute_force(bank: np.ndarray, x: np.ndarray) -> np.ndarray:
    queries = x.reshape(x.shape[0], x.shape[1], -1).transpose(0, 2, 1)
    squared = ((queries[:, :, None, :] - bank[None, None]) ** 2).sum(-1)
    return np.sqrt(squared.min(-1)).reshape(x.shape[0], 1, *x.shape[2:])


def _pca_like(rng: np.random.Generator, n: int, dims: int) -> np.ndarray:
    # Variance falling off with the index, as after a PCA projection.
    return (rng.normal(size=(n, dims)) * np.geomspace(4.0, 0.05, dims)).astype(np.float32)


@pytest.mark.parametrize("search_dims", [None, 40, 100])
def test_one_stage_search_is_exact(search_dims: int | None) -> None:
    rng = np.random.default_rng(0)
    bank = _pca_like(rng, 300, 40)
    x = _pca_like(rng, 2 * 20, 40).reshape(2, 4, 5, 40).transpose(0, 3, 1, 2).copy()
    got = _run_nearest(bank, x, search_dims, 8)
    np.testing.assert_allclose(got, _brute_force(bank, x), rtol=1e-4, atol=1e-4)


def test_two_stage_search_is_exact_when_every_entry_is_a_candidate() -> None:
    rng = np.random.default_rng(1)
    bank = rng.normal(size=(60, 24)).astype(np.float32)  # no leading directions at all
    x = rng.normal(size=(1, 24, *GRID)).astype(np.float32)
    got = _run_nearest(bank, x, search_dims=4, candidates=60)
    np.testing.assert_allclose(got, _brute_force(bank, x), rtol=1e-4, atol=1e-4)


def test_two_stage_search_finds_the_exact_nearest_on_projected_features() -> None:
    rng = np.random.default_rng(2)
    bank = _pca_like(rng, 2000, 64)
    x = (bank[rng.choice(2000, 40)] + _pca_like(rng, 40, 64) * 0.2)
    x = x.reshape(2, 4, 5, 64).transpose(0, 3, 1, 2).copy()
    got = _run_nearest(bank, x, search_dims=16, candidates=8)
    exact = _brute_force(bank, x)
    # The distance is exact over all 64 dims whenever the true nearest is a candidate, and
    # never below it otherwise.
    assert np.all(got >= exact - 1e-4)
    assert np.mean(np.isclose(got, exact, rtol=1e-4, atol=1e-4)) >= 0.95


@pytest.mark.parametrize(("entries", "candidates"), [(301, 1), (301, 7), (64, 64), (5, 8)])
def test_two_stage_search_always_measures_the_coarse_nearest_entry(entries, candidates) -> None:
    rng = np.random.default_rng(3)
    bank = _pca_like(rng, entries, 32)
    x = _pca_like(rng, 20, 32).reshape(1, 4, 5, 32).transpose(0, 3, 1, 2).copy()
    got = _run_nearest(bank, x, search_dims=8, candidates=candidates).ravel()
    queries = x.reshape(32, -1).T
    coarse = ((queries[:, None, :8] - bank[None, :, :8]) ** 2).sum(-1).argmin(1)
    coarse_distance = np.sqrt(((queries - bank[coarse]) ** 2).sum(-1))
    exact = _brute_force(bank, x).ravel()
    # Bank sizes that do not divide into the parts are padded; the padding changes nothing.
    assert np.all(got <= coarse_distance + 1e-4)
    assert np.all(got >= exact - 1e-4)


@pytest.mark.parametrize("grid", [(4, 6), (2, 8)])
def test_a_block_search_is_exact_when_every_entry_is_a_candidate(grid) -> None:
    """Every patch lands back in its own place: the block layout's reshapes are right."""
    rng = np.random.default_rng(4)
    bank = rng.normal(size=(40, 24)).astype(np.float32)
    x = rng.normal(size=(2, 24, *grid)).astype(np.float32)
    got = _run_nearest(bank, x, search_dims=4, candidates=40, search_block=2)
    np.testing.assert_allclose(got, _brute_force(bank, x), rtol=1e-4, atol=1e-4)


def test_a_block_search_measures_each_patch_against_its_blocks_candidates() -> None:
    rng = np.random.default_rng(5)
    bank = _pca_like(rng, 301, 32)
    x = _pca_like(rng, 24, 32).reshape(1, 4, 6, 32).transpose(0, 3, 1, 2).copy()
    got = _run_nearest(bank, x, search_dims=8, candidates=1, search_block=2)[0, 0]
    # NumPy: the block's mean finds its coarse nearest entry; each patch's exact distance
    # to that entry.
    for by in range(2):
        for bx in range(3):
            patches = x[0, :, 2 * by:2 * by + 2, 2 * bx:2 * bx + 2].reshape(32, 4).T
            mean = patches.mean(0)
            nearest = bank[((mean[:8] - bank[:, :8]) ** 2).sum(-1).argmin()]
            want = np.sqrt(((patches - nearest) ** 2).sum(-1)).reshape(2, 2)
            np.testing.assert_allclose(got[2 * by:2 * by + 2, 2 * bx:2 * bx + 2], want,
                                       rtol=1e-4, atol=1e-4)
    assert np.all(got >= _brute_force(bank, x)[0, 0] - 1e-4)


def test_a_grid_the_block_does_not_divide_searches_every_patch() -> None:
    rng = np.random.default_rng(6)
    bank = _pca_like(rng, 200, 32)
    x = _pca_like(rng, 20, 32).reshape(1, 4, 5, 32).transpose(0, 3, 1, 2).copy()
    blocked = _run_nearest(bank, x, search_dims=8, candidates=8, search_block=2)
    np.testing.assert_array_equal(blocked, _run_nearest(bank, x, search_dims=8, candidates=8))
