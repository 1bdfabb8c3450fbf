"""Overlapping tiles for large frames, and stitching their anomaly maps back together.

Down-scaling a 5 MP frame to the model's input size can shrink a small defect to
less than a patch. With tiling, the model sees ``tile`` x ``tile`` crops at (close
to) native resolution; fitting tiles the training images the same way, so the
model learns what a tile of a good part looks like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    y: int
    x: int
    image: np.ndarray


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering ``length`` with tiles of ``tile`` that overlap by >= ``overlap``."""
    if tile >= length:
        return [0]
    step = tile - overlap
    count = -(-(length - tile) // step) + 1
    # Spread the tiles evenly so the last one ends exactly at the edge.
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def split(frame: np.ndarray, tile: int, overlap: int) -> list[Tile]:
    """Cut ``frame`` (H, W, C) into overlapping tiles; a frame no larger than a tile is one tile."""
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got overlap={overlap}, tile={tile}")
    height, width = frame.shape[:2]
    th, tw = min(tile, height), min(tile, width)
    return [
        Tile(y, x, frame[y : y + th, x : x + tw])
        for y in tile_origins(height, th, overlap)
        for x in tile_origins(width, tw, overlap)
    ]


def stitch(tiles: list[Tile], maps: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """One (height, width) map from per-tile maps; overlaps keep the higher value."""
    full = np.full((height, width), -np.inf, np.float32)
    for tile, tile_map in zip(tiles, maps, strict=True):
        h, w = tile_map.shape
        region = full[tile.y : tile.y + h, tile.x : tile.x + w]
        np.maximum(region, tile_map, out=region)
    return full
