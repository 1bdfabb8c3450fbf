"""Model cards: what a fitted model is, how it was made, and the threshold it decides with.

A fitted model is a folder with ``model.onnx`` and ``card.json``. The card names
the sha256 of the ONNX bytes; loading refuses a model whose bytes do not match,
so a result row's model hash always means what it says.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inspector.errors import ModelError
from inspector.files import write_atomic

CARD_FILE = "card.json"
MODEL_FILE = "model.onnx"
CARD_VERSION = 1


class _Card(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSpec(_Card):
    """What the graph takes: uint8 (N, H, W, 3) frames; resizing happens inside the graph."""

    layout: Literal["NHWC"] = "NHWC"
    dtype: Literal["uint8"] = "uint8"
    channel_order: Literal["BGR", "RGB"] = "BGR"
    size: tuple[int, int]  # (height, width) the graph resizes every frame to
    resize: str = "bilinear"


class Threshold(_Card):
    """The decision threshold on the image score, and how it was chosen."""

    value: float
    method: Literal["good_quantile", "f1_optimal", "manual"]
    detail: dict[str, Any] = {}
    chosen_at: str = Field(default_factory=lambda: now_iso())


class ScoreScale(_Card):
    """Maps raw scores to a 0..1 display score: ``low`` (typical good) -> 0, ``high`` -> 1."""

    low: float
    high: float

    def display(self, score: float) -> float:
        span = self.high - self.low
        return 0.0 if span <= 0 else min(1.0, max(0.0, (score - self.low) / span))


class TrainingSet(_Card):
    count: int
    fingerprint: str  # sha256 over the sorted sha256 of every training image
    source: str | None = None


class Tiling(_Card):
    """Inspect frames as overlapping ``tile`` x ``tile`` crops (native pixels), maps stitched."""

    tile: int = Field(ge=32)
    overlap: int = Field(ge=0)


class ModelCard(_Card):
    card_version: Literal[1] = CARD_VERSION
    name: str
    version: str
    created_at: str = Field(default_factory=lambda: now_iso())
    backbone: dict[str, Any]
    input: InputSpec
    method: Literal["patchcore", "padim"]
    hyperparameters: dict[str, Any]
    training: TrainingSet
    threshold: Threshold
    score_scale: ScoreScale
    outputs: dict[str, str]  # output name -> what it holds
    tiling: Tiling | None = None
    metrics: dict[str, Any] = {}
    onnx_sha256: str


@dataclass(frozen=True)
class LoadedModel:
    """A verified model: its card, its ONNX bytes and where it came from."""

    card: ModelCard
    onnx: bytes
    path: Path

    @property
    def sha256(self) -> str:
        return self.card.onnx_sha256


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_model(model_dir: str | Path) -> LoadedModel:
    """Read and verify a fitted model folder; every problem is a ``ModelError`` naming the file."""
    model_dir = Path(model_dir)
    card_path, onnx_path = model_dir / CARD_FILE, model_dir / MODEL_FILE
    try:
        card = ModelCard.model_validate_json(card_path.read_bytes())
        onnx = onnx_path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelError(f"{model_dir}: no {Path(exc.filename).name}; not a fitted model") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ModelError(f"{card_path}: invalid card: {where}: {first['msg']}") from None
    except OSError as exc:
        raise ModelError(f"{model_dir}: cannot read: {exc}") from None
    actual = sha256_bytes(onnx)
    if actual != card.onnx_sha256:
        raise ModelError(
            f"{onnx_path}: sha256 {actual[:12]}… does not match the card's "
            f"{card.onnx_sha256[:12]}…; refusing a model that is not the one described"
        )
    return LoadedModel(card, onnx, model_dir)


def save_model(model_dir: str | Path, card: ModelCard, onnx: bytes | None = None) -> None:
    """Write the card (and the ONNX bytes when given) atomically; the card must match the bytes."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    if onnx is not None:
        if sha256_bytes(onnx) != card.onnx_sha256:
            raise ModelError("card.onnx_sha256 does not match the ONNX bytes being saved")
        write_atomic(model_dir / MODEL_FILE, onnx)
    text = json.dumps(card.model_dump(mode="json"), indent=2) + "\n"
    write_atomic(model_dir / CARD_FILE, text.encode())
