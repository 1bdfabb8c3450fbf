"""Fitting, the self-contained graph, the detector, calibration and evaluation, on tiny models."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from camera.synthetic import DEFECT_TYPES, PartGenerator
from inspector.errors import ImageError, ModelError
from inspector.evaluation.evaluate import calibrate, evaluate, load_category
from inspector.fitting.fit import FitOptions, fit, greedy_coreset, location_gaussians
from inspector.imaging.read import list_images, read_image
from inspector.model.card import CARD_FILE, MODEL_FILE, load_model
from inspector.model.detector import Detector
from inspector.model.tiling import split, stitch, tile_origins

SIZE = 128  # rendered part size
TINY = FitOptions(backbone="mobilenet_v2", size=128, max_bank=512, holdout=0.2)
GOOD_TRAIN, GOOD_TEST = range(0, 10), range(100, 106)


def _write_parts(root: Path) -> Path:
    """A tiny MVTec-AD-layout category rendered by the synthetic generator."""
    gen = PartGenerator(seed=3, width=SIZE, height=SIZE)
    for folder, indices, defect in [
        ("train/good", GOOD_TRAIN, None),
        ("test/good", GOOD_TEST, None),
        *[(f"test/{d}", range(200 + 10 * k, 202 + 10 * k), d) for k, d in enumerate(DEFECT_TYPES)],
    ]:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in indices:
            part = gen.render(i, defect=defect)
            cv2.imwrite(str(root / folder / f"{i:03d}.png"), part.image)
            if defect:
                masks = root / "ground_truth" / defect
                masks.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(masks / f"{i:03d}_mask.png"), part.mask)
    return root


@pytest.fixture(scope="module")
def category(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_parts(tmp_path_factory.mktemp("parts"))


@pytest.fixture(scope="module")
def model_dir(category: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model")
    fit(list_images(category / "train/good"), out, TINY)
    return out


@pytest.fixture(scope="module")
def detector(model_dir: Path) -> Detector:
    return Detector.open(model_dir, threads=2, providers=("cpu",))


def test_fit_writes_a_verified_model_with_a_complete_card(model_dir: Path) -> None:
    model = load_model(model_dir)
    card = model.card
    assert card.method == "patchcore" and card.backbone["name"] == "mobilenet_v2"
    assert card.training.count == 8  # 10 images, 2 held out for the first threshold
    assert card.threshold.method == "good_quantile" and card.threshold.value > 0
    assert card.score_scale.low < card.threshold.value < card.score_scale.high
    assert 0 < card.hyperparameters["bank_size"] <= TINY.max_bank
    graph = onnx.load_from_string(model.onnx).graph
    assert [o.name for o in graph.output] == ["score", "anomaly_map"]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8


def test_fit_is_deterministic_for_a_seed(category: Path, model_dir: Path, tmp_path: Path) -> None:
    again = fit(list_images(category / "train/good"), None, TINY)
    assert again.card.onnx_sha256 == load_model(model_dir).card.onnx_sha256
    other = fit(list_images(category / "train/good"), None,
                FitOptions(**{**TINY.__dict__, "seed": 1}))
    assert other.card.onnx_sha256 != again.card.onnx_sha256


def test_defects_score_above_good_parts_and_the_map_peaks_on_them(
    category: Path, detector: Detector
) -> None:
    good = [detector.predict(read_image(p)).score for p in list_images(category / "test/good")]
    gen = PartGenerator(seed=3, width=SIZE, height=SIZE)
    for k, defect in enumerate(("spot", "scratch", "crack")):
        part = gen.render(300 + k, defect=defect)
        prediction = detector.predict(part.image)
        assert prediction.score > max(good), defect
        peak = np.unravel_index(np.argmax(prediction.anomaly_map), prediction.anomaly_map.shape)
        near = cv2.dilate(part.mask, np.ones((25, 25), np.uint8))  # a few patches of 8 px
        assert near[peak] > 0, f"{defect}: map peaks at {peak}, away from the defect"


def test_map_has_the_frame_size_and_batches_agree_with_single_frames(
    category: Path, detector: Detector
) -> None:
    frames = [read_image(p) for p in list_images(category / "test/good")[:3]]
    batch = detector.predict_batch(frames)
    for frame, together in zip(frames, batch, strict=True):
        alone = detector.predict(frame)
        assert together.anomaly_map.shape == frame.shape[:2]
        assert alone.score == pytest.approx(together.score, rel=1e-5)
    wide = cv2.resize(frames[0], (300, 120))
    assert detector.predict(wide).anomaly_map.shape == (120, 300)


def test_padim_fits_and_separates(category: Path, tmp_path: Path) -> None:
    options = FitOptions(**{**TINY.__dict__, "method": "padim"})
    fit(list_images(category / "train/good"), tmp_path, options)
    detector = Detector.open(tmp_path, providers=("cpu",))
    good = max(detector.predict(read_image(p)).score
               for p in list_images(category / "test/good"))
    spot = detector.predict(PartGenerator(seed=3, width=SIZE, height=SIZE)
                            .render(310, defect="spot").image).score
    assert spot > good


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((64, 64, 3), np.float32), "uint8"),
        (np.zeros((64, 64, 4), np.uint8), "(H, W, 3)"),
        (np.zeros((8, 64, 3), np.uint8), "smaller than"),
        (np.zeros((64,), np.uint8), "(H, W, 3)"),
        ("not an array", "numpy array"),
    ],
)
def test_bad_frames_get_clear_errors(detector: Detector, frame: object, message: str) -> None:
    with pytest.raises(ImageError, match=message if message[0] != "(" else r"\(H, W, 3\)"):
        detector.predict(frame)  # type: ignore[arg-type]


def test_greyscale_frames_are_accepted(detector: Detector) -> None:
    assert detector.predict(np.full((64, 64), 128, np.uint8)).anomaly_map.shape == (64, 64)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty file"), (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not a decodable image"),
     (b"plain text, not an image", "not a decodable image")],
)
def test_bad_image_files_get_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        read_image(path)
    with pytest.raises(ImageError, match="cannot read"):
        read_image(tmp_path / "missing.png")


def test_fit_refuses_a_folder_with_a_corrupt_image(category: Path, tmp_path: Path) -> None:
    for p in list_images(category / "train/good")[:3]:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "zz_broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ImageError, match=r"zz_broken\.png"):
        fit(list_images(tmp_path), None, TINY)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="no images"):
        list_images(tmp_path / "empty")


def test_fit_options_are_validated() -> None:
    with pytest.raises(ValueError, match="size must be a multiple of 16"):
        FitOptions(size=100)
    with pytest.raises(ValueError, match="coreset_ratio"):
        FitOptions(coreset_ratio=0)


def test_a_model_whose_bytes_changed_is_refused(model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    copy.mkdir()
    (copy / CARD_FILE).write_bytes((model_dir / CARD_FILE).read_bytes())
    onnx_bytes = bytearray((model_dir / MODEL_FILE).read_bytes())
    onnx_bytes[-1] ^= 1
    (copy / MODEL_FILE).write_bytes(bytes(onnx_bytes))
    with pytest.raises(ModelError, match="does not match"):
        Detector.open(copy)


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


def test_tiles_cover_the_frame_and_stitch_back() -> None:
    assert tile_origins(100, 100, 10) == [0]
    origins = tile_origins(1000, 256, 32)
    assert origins[0] == 0 and origins[-1] == 1000 - 256
    assert all(b - a <= 256 - 32 for a, b in itertools.pairwise(origins))
    frame = np.arange(300 * 500, dtype=np.float32).reshape(300, 500, 1)
    tiles = split(frame, 128, 16)
    full = stitch(tiles, [t.image[:, :, 0] for t in tiles], 300, 500)
    np.testing.assert_array_equal(full, frame[:, :, 0])
    with pytest.raises(ValueError, match="overlap"):
        split(frame, 64, 64)


def test_a_tiled_model_keeps_a_small_defect_that_downscaling_would_lose(
    category: Path, tmp_path: Path
) -> None:
    """A 512 px frame of 4x4 parts: tiled at 128 px, each part is seen at full size."""
    gen = PartGenerator(seed=3, width=SIZE, height=SIZE)

    def mosaic(first: int, defect_at: int | None = None) -> np.ndarray:
        parts = [gen.render(first + i, defect="spot" if i == defect_at else None).image
                 for i in range(16)]
        return np.vstack([np.hstack(parts[r * 4 : r * 4 + 4]) for r in range(4)])

    train = tmp_path / "train"
    train.mkdir()
    for k in range(4):
        cv2.imwrite(str(train / f"{k}.png"), mosaic(16 * k))
    options = FitOptions(**{**TINY.__dict__, "tile": SIZE, "tile_overlap": 0, "holdout": 0.25})
    fit(list_images(train), tmp_path / "model", options)
    detector = Detector.open(tmp_path / "model", providers=("cpu",))
    assert detector.card.tiling is not None and detector.card.tiling.tile == SIZE
    good = detector.predict(mosaic(500))
    bad = detector.predict(mosaic(500, defect_at=5))
    assert good.anomaly_map.shape == (4 * SIZE, 4 * SIZE)
    assert bad.score > good.score
    peak_row, peak_col = np.unravel_index(np.argmax(bad.anomaly_map), bad.anomaly_map.shape)
    assert (peak_row // SIZE, peak_col // SIZE) == (1, 1)  # part 5 sits in row 1, column 1


def test_greedy_coreset_covers_every_cluster() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 50, (5, 8))
    points = np.concatenate([c + rng.normal(0, 0.1, (200, 8)) for c in centres])
    chosen = greedy_coreset(points.astype(np.float32), 5)
    assert len(set(chosen.tolist())) == 5
    assert sorted({int(i) // 200 for i in chosen}) == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(greedy_coreset(points, 2000), np.arange(1000))


def test_location_gaussians_have_the_data_mean_and_a_usable_inverse() -> None:
    maps = np.random.default_rng(0).normal(3.0, 2.0, (50, 4, 2, 2)).astype(np.float32)
    mean, inv_cov = location_gaussians(maps)
    assert mean.shape == (4, 4) and inv_cov.shape == (4, 4, 4)
    np.testing.assert_allclose(mean, maps.mean(0).reshape(4, 4).T, rtol=1e-5)
    assert np.all(np.linalg.eigvalsh(inv_cov) > 0)


def test_quantize_writes_a_verified_int8_copy_that_still_scores(
    category: Path, model_dir: Path, tmp_path: Path
) -> None:
    from inspector.fitting.quantize import quantize_model

    card = quantize_model(model_dir, list_images(category / "train/good")[:4], tmp_path / "q")
    model = load_model(tmp_path / "q")  # verifies the hash
    ops = {n.op_type for n in onnx.load_from_string(model.onnx).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    quant = card.hyperparameters["quantization"]
    assert quant["float_model_sha256"] == load_model(model_dir).sha256 and quant["nodes"] > 10
    assert "calibrate" in card.threshold.detail["note"]
    prediction = Detector(model, providers=("cpu",)).predict(
        read_image(list_images(category / "test/good")[0]))
    assert np.isfinite(prediction.score) and prediction.anomaly_map.shape == (SIZE, SIZE)
    with pytest.raises(ModelError, match="calibration images"):
        quantize_model(model_dir, [], tmp_path / "none")
