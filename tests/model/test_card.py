"""Model cards: saved atomically, loaded only when the ONNX bytes are the ones described."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspector.errors import ModelError
from inspector.model.card import (
    CARD_FILE,
    MODEL_FILE,
    InputSpec,
    ModelCard,
    ScoreScale,
    Threshold,
    TrainingSet,
    load_model,
    save_model,
    sha256_bytes,
)

ONNX = b"\x08\x07onnx-bytes-stand-in"


def card(**changes: object) -> ModelCard:
    fields = {
        "name": "flange",
        "version": "1",
        "backbone": {"name": "mobilenet_v2"},
        "input": InputSpec(size=(256, 256)),
        "method": "patchcore",
        "hyperparameters": {"coreset_ratio": 0.1},
        "training": TrainingSet(count=3, fingerprint="ab" * 32),
        "threshold": Threshold(value=2.5, method="good_quantile", detail={"quantile": 0.99}),
        "score_scale": ScoreScale(low=1.0, high=4.0),
        "outputs": {"score": "image anomaly score"},
        "onnx_sha256": sha256_bytes(ONNX),
        **changes,
    }
    return ModelCard(**fields)


def test_round_trip(tmp_path: Path) -> None:
    save_model(tmp_path, card(), ONNX)
    loaded = load_model(tmp_path)
    assert loaded.card == card().model_copy(update={"created_at": loaded.card.created_at})
    assert loaded.onnx == ONNX and loaded.sha256 == sha256_bytes(ONNX)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_tampered_model_is_refused(tmp_path: Path) -> None:
    save_model(tmp_path, card(), ONNX)
    (tmp_path / MODEL_FILE).write_bytes(ONNX + b"\0")
    with pytest.raises(ModelError, match="does not match the card"):
        load_model(tmp_path)


def test_saving_mismatched_bytes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not match"):
        save_model(tmp_path, card(), ONNX + b"!")
    assert not (tmp_path / MODEL_FILE).exists()


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d.pop("threshold"), "threshold"),
        (lambda d: d.update(surprise=1), "surprise"),
        (lambda d: d.update(method="svm"), "method"),
        (lambda d: d["input"].update(size=[256]), "input.size"),
    ],
)
def test_invalid_card_names_the_field(tmp_path: Path, mutate: object, fragment: str) -> None:
    save_model(tmp_path, card(), ONNX)
    data = json.loads((tmp_path / CARD_FILE).read_text())
    mutate(data)  # type: ignore[operator]
    (tmp_path / CARD_FILE).write_text(json.dumps(data))
    with pytest.raises(ModelError, match=f"invalid card: {fragment}"):
        load_model(tmp_path)


def test_not_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no card\.json; not a fitted model"):
        load_model(tmp_path)
    (tmp_path / CARD_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="invalid card"):
        load_model(tmp_path)


@pytest.mark.parametrize(("score", "shown"), [(0.0, 0.0), (1.0, 0.0), (2.5, 0.5), (9.0, 1.0)])
def test_display_score(score: float, shown: float) -> None:
    assert ScoreScale(low=1.0, high=4.0).display(score) == pytest.approx(shown)
