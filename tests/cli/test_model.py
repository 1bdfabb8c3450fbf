"""``inspector predict`` as a user runs it, against the detector on the same tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from inspector.imaging import list_images, read_image
from inspector.model import Detector


def test_cli_predict_and_eval_agree_with_the_detector(
    category: Path, model_dir: Path, detector: Detector, tmp_path: Path
) -> None:
    images = list_images(category / "test/spot") + list_images(category / "test/good")[:1]
    for p in images:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    targets = [tmp_path / p.name for p in images]
    out = subprocess.run(
        [sys.executable, "-m", "inspector.cli.commands", "predict", "--model", str(model_dir),
         *map(str, targets), str(tmp_path / "missing.png")],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 1, out.stderr  # one image is missing
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert "error" in lines[-1] and "missing.png" in lines[-1]["error"]
    for line, path in zip(lines, targets, strict=False):
        expected = detector.predict(read_image(path))
        assert line["score"] == pytest.approx(expected.score, rel=1e-5)
        assert line["verdict"] == expected.verdict
        overlay = cv2.imread(line["overlay"])
        assert overlay is not None and overlay.shape == read_image(path).shape


def test_cli_fit_reports_what_it_chose(category: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from inspector.cli import main

    args = ["fit", "--images", str(category / "train/good"), "--out", str(tmp_path / "m"),
            "--backbone", "mobilenet_v2", "--size", "128", "--max-bank", "512"]
    assert main(args) == 0
    chosen = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert chosen["top_fraction"] == chosen["selection"]["chosen"]["top_fraction"]
    assert chosen["input"] == [128, 128] and chosen["frames_shrunk"] == 1.0  # 128 px frames
    assert main([*args, "--top-fraction", "0.05", "--layers", "s8_expand"]) == 0
    given = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (given["top_fraction"], given["selection"]) == (0.05, "top_fraction given by the caller")
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["hyperparameters"]["layers"] == ["s8_expand"]
    assert card["hyperparameters"]["feature_dims"] == 192  # its channels, under --dims 256
