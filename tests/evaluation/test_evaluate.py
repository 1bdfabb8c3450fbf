"""``calibrate`` and ``evaluate`` on a tiny fitted model and its synthetic category."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camera.synthetic import DEFECT_TYPES
from inspector.evaluation import calibrate, evaluate, load_category
from inspector.imaging import list_images, read_image
from inspector.model import CARD_FILE, MODEL_FILE, Detector, load_model
from tests.conftest import GOOD_TEST


def test_calibrate_with_defects_chooses_the_f1_optimal_threshold(
    category: Path, model_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "model"
    copy.mkdir()
    for name in (CARD_FILE, MODEL_FILE):
        (copy / name).write_bytes((model_dir / name).read_bytes())
    defects = [s.path for s in load_category(category) if s.defective]
    card = calibrate(copy, list_images(category / "test/good"), defects)
    assert card.threshold.method == "f1_optimal"
    assert load_model(copy).card.threshold == card.threshold  # stored, and the hash still holds
    good_only = calibrate(copy, list_images(category / "test/good"), quantile=1.0, margin=0.0)
    detector = Detector.open(copy, providers=("cpu",))
    top = max(detector.predict(read_image(p)).score for p in list_images(category / "test/good"))
    assert good_only.threshold.value == pytest.approx(top, rel=1e-6)


def test_evaluate_reports_metrics_and_writes_the_visual_report(
    category: Path, model_dir: Path, tmp_path: Path
) -> None:
    result = evaluate(model_dir, category, tmp_path / "report")
    assert result["images"] == len(GOOD_TEST) + 2 * len(DEFECT_TYPES)
    assert result["image_auroc"] >= 0.9
    assert 0.5 < result["pixel_auroc"] <= 1 and 0 < result["pro"] <= 1
    assert result["tp"] + result["fn"] == 2 * len(DEFECT_TYPES)
    assert result["ms_per_image"] > 0
    json.dumps(result)
    remembered = load_model(model_dir).card.metrics["evaluations"][category.name]
    assert remembered["image_auroc"] == result["image_auroc"]
    assert (tmp_path / "report" / "index.html").is_file()
    assert (tmp_path / "report" / "roc.png").is_file()
    # Each list of mistakes shows either its mistakes or, with none, the closest calls.
    for wrong, closest, count in (("false_rejects.png", "closest_good.png", result["fp"]),
                                  ("escapes.png", "closest_defective.png", result["fn"])):
        shown = wrong if count else closest
        assert [(tmp_path / "report" / name).is_file() for name in (wrong, closest)] == [
            shown == wrong, shown == closest]
