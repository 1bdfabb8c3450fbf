"""Fitting: the self-contained graph and its card, determinism, PaDiM, the coreset and Gaussians."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from camera.synthetic import PartGenerator
from inspector.errors import ImageError
from inspector.fitting import FitOptions, fit
from inspector.fitting.fit import input_side, model_size
from inspector.fitting.memory import greedy_coreset, location_gaussians
from inspector.imaging import list_images, read_image
from inspector.model import Detector, load_model
from tests.conftest import SIZE, TINY


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


def test_padim_fits_and_separates(category: Path, tmp_path: Path) -> None:
    options = FitOptions(**{**TINY.__dict__, "method": "padim"})
    fit(list_images(category / "train/good"), tmp_path, options)
    detector = Detector.open(tmp_path, providers=("cpu",))
    good = max(detector.predict(read_image(p)).score
               for p in list_images(category / "test/good"))
    spot = detector.predict(PartGenerator(seed=3, width=SIZE, height=SIZE)
                            .render(310, defect="spot").image).score
    assert spot > good


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
    with pytest.raises(ValueError, match="search_block must be positive"):
        FitOptions(search_block=0)


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


@pytest.mark.parametrize(("frame_hw", "keep_aspect", "model_hw"), [
    ((256, 96), True, (256, 96)),  # tall: the shorter side is the size, the ratio kept
    ((96, 250), True, (96, 256)),  # wide, the longer side a multiple of 16
    ((256, 96), False, (96, 96)),  # square by choice
    ((1000, 96), True, (384, 96)),  # ratio capped at 4:1
    ([(256, 96), (96, 256), (128, 128), (200, 100)], True, (96, 96)),  # no one shape: square
])
def test_keep_aspect_shapes_the_model_like_its_frames(
    tmp_path: Path, frame_hw: tuple[int, int] | list[tuple[int, int]], keep_aspect: bool,
    model_hw: tuple[int, int],
) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "good"
    folder.mkdir()
    shapes = frame_hw if isinstance(frame_hw, list) else [frame_hw] * 4
    for i, shape in enumerate(shapes):
        noise = rng.integers(90, 160, size=shape, dtype=np.uint8)
        cv2.imwrite(str(folder / f"{i}.png"), cv2.GaussianBlur(noise, (0, 0), 3))
    options = FitOptions(**{**TINY.__dict__, "size": 96, "keep_aspect": keep_aspect,
                            "holdout": 0.25})
    result = fit(list_images(folder), tmp_path / "model", options)
    assert result.card.input.size == model_hw
    detector = Detector(load_model(tmp_path / "model"), threads=1)
    frame = read_image(folder / "0.png")
    scratched = frame.copy()
    cv2.line(scratched, (10, frame.shape[0] // 2), (frame.shape[1] - 10, frame.shape[0] // 2),
             (255, 255, 255), 2)
    clean, defect = detector.predict(frame), detector.predict(scratched)
    assert clean.anomaly_map.shape == frame.shape[:2]  # the map at the frame's own size
    assert defect.score > clean.score


def test_frames_shrunk_more_than_twice_draw_advice_to_tile_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):  # 1400x1400 frames: the model's input stops at 320
        path = tmp_path / f"big{i}.png"
        cv2.imwrite(str(path), rng.integers(90, 110, (1400, 1400, 3), dtype=np.uint8))
        paths.append(path)
    options = FitOptions(backbone="mobilenet_v2", max_bank=64, auto=False)
    with caplog.at_level("WARNING", logger="inspector.fitting.fit"):
        result = fit(paths, None, options)
    assert result.card.input.size == (320, 320)
    assert result.card.hyperparameters["frames_shrunk"] == 4.38
    advice = [r.getMessage() for r in caplog.records if "--tile" in r.getMessage()]
    assert len(advice) == 1 and "shrunk 4.4x" in advice[0] and "--tile 640" in advice[0]
    assert "in 9 tiles" in advice[0]  # 3 x 3 tiles of 640 with 32 px overlap
    caplog.clear()
    with caplog.at_level("WARNING", logger="inspector.fitting.fit"):
        tiled = fit(paths, None, FitOptions(backbone="mobilenet_v2", max_bank=64, auto=False,
                                            tile=640))
    assert tiled.card.hyperparameters["frames_shrunk"] == 2.0  # each tile, 640 -> 320
    assert not [r for r in caplog.records if "--tile" in r.getMessage()]


@pytest.mark.parametrize(("frame_hw", "size", "model_hw"), [
    ((288, 288), None, (288, 288)),  # the frames' own size: neither shrunk nor enlarged
    ((250, 250), None, (256, 256)),  # small frames: never under 256
    ((512, 512), None, (320, 320)),  # large ones: never over 320
    ((1024, 1024), None, (320, 320)),
    ((400, 1024), None, (320, 816)),  # the shorter side sets it; the shape is kept
    ((640, 640), 128, (128, 128)),  # a given size wins
])
def test_the_input_size_follows_the_frames_unless_given(
    frame_hw: tuple[int, int], size: int | None, model_hw: tuple[int, int],
) -> None:
    frames = [np.zeros((*frame_hw, 3), np.uint8)] * 3
    options = FitOptions(size=size)
    assert model_size(options, frames) == model_hw
    assert input_side(options, frames) == min(model_hw)


def test_the_card_records_the_input_size_and_why(model_dir: Path) -> None:
    hyper = load_model(model_dir).card.hyperparameters
    assert hyper["size"] == TINY.size and hyper["size_choice"] == "given by the caller"


def test_the_card_records_the_choice_made_on_synthetic_defects(model_dir: Path) -> None:
    hyper = load_model(model_dir).card.hyperparameters
    selection = hyper["selection"]
    assert selection["held_out_images"] == 2 and selection["synthetic_defects"] == 4
    assert [c["top_fraction"] for c in selection["candidates"]] == [0.001, 0.01, 0.05]
    assert all(0 <= c["synthetic_auroc"] <= 1 for c in selection["candidates"])
    assert hyper["top_fraction"] == selection["chosen"]["top_fraction"]


@pytest.mark.parametrize(("given", "auto", "expected", "reason"), [
    (0.05, True, 0.05, "given by the caller"),
    (None, False, 0.01, "--no-auto"),
])
def test_explicit_options_override_the_choice(
    category: Path, given: float | None, auto: bool, expected: float, reason: str,
) -> None:
    options = FitOptions(**{**TINY.__dict__, "top_fraction": given, "auto": auto})
    result = fit(list_images(category / "train/good"), None, options)
    assert result.card.hyperparameters["top_fraction"] == expected
    assert reason in result.card.hyperparameters["selection"]
    graph = onnx.load_from_string(result.onnx).graph
    [topk] = [n for n in graph.node if n.op_type == "TopK" and "score" not in n.output[0]
              and any(o.startswith("topk_indices") for o in n.output)]
    [k] = [i for i in graph.initializer if i.name == topk.input[1]]
    side = result.card.input.size
    assert onnx.numpy_helper.to_array(k)[0] == max(1, round(expected * side[0] * side[1]))


def test_frames_too_small_for_a_synthetic_defect_are_fitted_without_choosing(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "good"
    folder.mkdir()
    for i in range(5):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(90, 160, (24, 24), dtype=np.uint8))
    options = FitOptions(**{**TINY.__dict__, "size": 64, "holdout": 0.4})
    result = fit(list_images(folder), None, options)
    assert "no room for a synthetic defect" in result.card.hyperparameters["selection"]
    assert result.card.hyperparameters["top_fraction"] == 0.01
