"""The exported feature extractors under ``models/backbones``, as the fitting code needs them.

Runtime code reads only the committed ONNX files and ``manifest.json``; torch is
needed solely to re-export them (``inspector.fitting.export``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from inspector.errors import ModelError
from inspector.model import sha256_bytes

BACKBONES_DIR = Path(__file__).resolve().parents[2] / "models" / "backbones"


@dataclass(frozen=True)
class Backbone:
    """One exported backbone: its ONNX bytes, input normalisation and feature outputs."""

    name: str
    onnx: bytes
    sha256: str
    channel_order: str  # what the network expects: "RGB"
    mean: tuple[float, float, float]  # on the 0..255 scale, in ``channel_order``
    std: tuple[float, float, float]
    channels: dict[str, int]  # output name -> channels
    strides: dict[str, int]  # output name -> stride


def load_backbone(name: str, root: Path = BACKBONES_DIR) -> Backbone:
    """Read a backbone and check its bytes against the manifest."""
    entries = _manifest(root)["backbones"]
    if name not in entries:
        raise ModelError(f"unknown backbone {name!r}; available: {', '.join(sorted(entries))}")
    entry = entries[name]
    path = root / entry["onnx"]["file"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read backbone: {exc.strerror}") from None
    digest = sha256_bytes(data)
    if digest != entry["onnx"]["sha256"]:
        raise ModelError(f"{path}: sha256 {digest[:12]}… does not match manifest.json")
    norm = entry["normalisation"]["on_0_255_scale"]
    return Backbone(
        name=name,
        onnx=data,
        sha256=digest,
        channel_order=entry["input"]["channel_order"],
        mean=tuple(norm["mean"]),
        std=tuple(norm["std"]),
        channels={o["name"]: o["channels"] for o in entry["outputs"]},
        strides={o["name"]: o["stride"] for o in entry["outputs"]},
    )


@cache
def _manifest(root: Path) -> dict:
    path = root / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read the backbone manifest: {exc}") from None
