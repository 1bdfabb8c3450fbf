"""What a fitted model remembers of good parts: the feature projection, the PatchCore
memory bank (a greedy coreset of patches) and PaDiM's per-location Gaussians."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from tqdm import tqdm

COVARIANCE_SHRINK = 0.01  # padim: added to the covariance diagonal, relative to its mean


def pca(samples: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean (C,) and the top ``dims`` principal directions (C, dims) of ``samples`` (n, C)."""
    samples = samples.astype(np.float64)
    mean = samples.mean(axis=0)
    covariance = np.cov(samples - mean, rowvar=False)
    values, vectors = np.linalg.eigh(covariance)
    top = vectors[:, np.argsort(values)[::-1][:dims]]
    top *= np.sign(top[np.argmax(np.abs(top), axis=0), np.arange(top.shape[1])])  # fixed signs
    return mean.astype(np.float32), top.astype(np.float32)


def greedy_coreset(
    points: np.ndarray, size: int, seed: int = 0, sketch_dims: int = 32, progress: bool = False,
    on_step: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Indices of ``size`` points chosen by greedy k-center selection (PatchCore's coreset).

    Each step takes the point farthest from everything chosen so far. Distances are
    measured in a random ``sketch_dims`` projection, which keeps the choice nearly the
    same at a fraction of the cost.
    """
    n = len(points)
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    sketch = points
    if points.shape[1] > sketch_dims:
        matrix = rng.normal(size=(points.shape[1], sketch_dims)) / math.sqrt(sketch_dims)
        sketch = points @ matrix.astype(np.float32)
    sketch = np.ascontiguousarray(sketch, dtype=np.float32)
    norms = np.einsum("ij,ij->i", sketch, sketch)
    chosen = np.empty(size, np.int64)
    chosen[0] = rng.integers(n)
    center = sketch[chosen[0]]
    nearest = norms - 2 * sketch @ center + center @ center
    for step in tqdm(range(1, size), desc="coreset", unit="pt", disable=not progress,
                     leave=False, mininterval=0.5):
        chosen[step] = int(np.argmax(nearest))
        center = sketch[chosen[step]]
        np.minimum(nearest, norms - 2 * (sketch @ center) + center @ center, out=nearest)
    return chosen


def location_gaussians(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PaDiM: per patch location, the mean (P, D) and inverse covariance (P, D, D)."""
    n, dims, height, width = maps.shape
    patches = maps.reshape(n, dims, height * width).transpose(2, 0, 1).astype(np.float64)
    mean = patches.mean(axis=1)
    centered = patches - mean[:, None, :]
    covariance = np.einsum("pnd,pne->pde", centered, centered) / max(1, n - 1)
    ridge = COVARIANCE_SHRINK * np.trace(covariance, axis1=1, axis2=2) / dims + 1e-6
    covariance += ridge[:, None, None] * np.eye(dims)
    return mean.astype(np.float32), np.linalg.inv(covariance).astype(np.float32)
