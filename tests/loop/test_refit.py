"""Re-fitting from the store: which stored frames, the options read back from a card, and a
real fit into a loadable model that says where it came from."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from inspector.errors import ImageError, InspectorError
from inspector.fitting import FitOptions, fit
from inspector.imaging import list_images
from inspector.loop.jobs import Cancelled
from inspector.loop.refit import (
    MIN_REFIT_SAMPLES,
    REFIT_HOLDOUT,
    NotEnoughSamples,
    RefitSamples,
    options_from_card,
    refit,
    refit_samples,
)
from inspector.model import Detector, ModelCard, load_model
from inspector.store import Store
from tests.conftest import TINY
from tests.loop.conftest import Line
from tests.store.conftest import HOUR, NOW


def image_path(store: Store, inspection_id: int) -> Path:
    row = store.get(inspection_id)
    assert row is not None and row["image_path"] is not None
    return store.root / row["image_path"]


# -- which frames -----------------------------------------------------------------------------

def test_labeled_good_frames_are_the_samples_never_defects_or_errors(
        store: Store, frames: list[np.ndarray]) -> None:
    line = Line(store, frames)
    good_passes = line.add("pass", "good", n=4)
    overridden = line.add("reject", "good", n=2)  # false rejects QA relabeled: the point
    line.add("reject", "defect", n=2)
    line.add("pass", "defect")  # an escape
    line.add("error", "good")  # has a frame and a good label, but the model failed on it
    line.add("reject")  # unlabeled reject
    passes = line.add("pass", n=3)  # unlabeled passes with a frame
    line.add("pass", frame=False)  # an unlabeled pass without one: not a sample, not lacking
    no_frame = line.add("pass", "good", frame=False)
    deleted = line.add("pass", "good")
    image_path(store, deleted[0]).unlink()

    samples = refit_samples(store)
    assert isinstance(samples, RefitSamples)
    assert samples.ids == tuple(sorted(good_passes + overridden))
    assert (samples.labeled_good, samples.unlabeled_passes, samples.lacking_frame) == (6, 0, 2)
    assert samples.paths == tuple(image_path(store, i) for i in samples.ids)
    assert all(p.is_absolute() and p.is_file() for p in samples.paths)
    assert len(samples) == 6
    assert samples.describe() == "6 frames: 6 labeled good; 2 labeled good have no frame"
    assert no_frame[0] not in samples.ids

    with_passes = refit_samples(store, include_passes=True)
    assert with_passes.ids == tuple(sorted(good_passes + overridden + passes))
    assert (with_passes.labeled_good, with_passes.unlabeled_passes,
            with_passes.lacking_frame) == (6, 3, 2)
    assert with_passes.describe().startswith("9 frames: 6 labeled good, 3 unlabeled passes; ")
    assert with_passes.to_json()["enough"] is False


def test_a_relabel_moves_a_frame_in_and_out(store: Store, frames: list[np.ndarray]) -> None:
    line = Line(store, frames)
    [first] = line.add("reject", "good")
    assert refit_samples(store).ids == (first,)
    store.add_label(first, "defect", "qa2")
    assert refit_samples(store).ids == ()
    store.add_label(first, "none", "qa2")  # cleared: an unlabeled reject is no sample either
    assert refit_samples(store, include_passes=True).ids == ()


def test_camera_and_since_filters(store: Store, frames: list[np.ndarray]) -> None:
    line = Line(store, frames)
    old_cam1 = line.add("pass", "good", camera="cam1", at=NOW - 2 * HOUR, n=2)
    new_cam1 = line.add("pass", "good", camera="cam1", at=NOW, n=2)
    old_cam2 = line.add("pass", "good", camera="cam2", at=NOW - 2 * HOUR)
    new_cam2 = line.add("pass", "good", camera="cam2", at=NOW, n=3)
    line.add("pass", "good", camera="cam2", at=NOW - 2 * HOUR, frame=False)  # old, lacking
    new_lacking = line.add("pass", "good", camera="cam2", at=NOW, frame=False)
    pass_cam2 = line.add("pass", camera="cam2", at=NOW)

    assert refit_samples(store, cameras=["cam2"]).ids == tuple(sorted(old_cam2 + new_cam2))
    assert refit_samples(store, cameras="cam2").ids == tuple(sorted(old_cam2 + new_cam2))
    assert refit_samples(store, cameras=["cam1", "cam2"]).labeled_good == 8
    assert refit_samples(store, cameras=["cam3"]).ids == ()
    assert refit_samples(store, cameras=[]).ids == ()
    recent = refit_samples(store, since_ns=NOW - HOUR)
    assert recent.ids == tuple(sorted(new_cam1 + new_cam2))
    assert recent.lacking_frame == len(new_lacking)
    both = refit_samples(store, cameras=["cam2"], since_ns=NOW - HOUR, include_passes=True)
    assert both.ids == tuple(sorted(new_cam2 + pass_cam2))
    assert (both.labeled_good, both.unlabeled_passes, both.lacking_frame) == (3, 1, 1)
    assert both.cameras == ("cam2",) and both.since_ns == NOW - HOUR
    assert old_cam1  # written, and filtered out above


def test_the_cap_keeps_the_newest_labeled_good_first(store: Store,
                                                    frames: list[np.ndarray]) -> None:
    line = Line(store, frames)
    goods = line.add("pass", "good", n=6)
    passes = line.add("pass", n=4)  # newer than every good

    capped = refit_samples(store, limit=4)
    assert capped.ids == tuple(goods[-4:])
    assert (capped.labeled_good, capped.unlabeled_passes, capped.left_out) == (4, 0, 2)
    assert "2 more left out (at most 4, newest kept)" in capped.describe()

    mixed = refit_samples(store, include_passes=True, limit=8)
    assert mixed.ids == tuple(sorted(goods + passes[-2:]))
    assert (mixed.labeled_good, mixed.unlabeled_passes, mixed.left_out) == (6, 2, 2)
    assert refit_samples(store, include_passes=True, limit=None).left_out == 0
    with pytest.raises(ValueError, match="limit"):
        refit_samples(store, limit=-1)


# -- the options that made a model ----------------------------------------------------------

def test_options_from_a_real_card_are_the_options_that_made_it(card: ModelCard) -> None:
    # TINY fixed the size and let the fit choose the image score on synthetic defects.
    assert card.hyperparameters["size_choice"] == "given by the caller"
    assert isinstance(card.hyperparameters["selection"], dict)
    options = options_from_card(card)
    assert options == TINY
    assert isinstance(options.layers, tuple)


def test_the_same_frames_and_the_read_back_options_give_the_same_model(
        card: ModelCard, category: Path) -> None:
    again = fit(list_images(category / "train/good"), None, options_from_card(card))
    assert again.card.onnx_sha256 == card.onnx_sha256


def test_what_the_fit_chose_itself_is_chosen_again(category: Path, tmp_path: Path) -> None:
    given = FitOptions(backbone="mobilenet_v2", size=None, top_fraction=0.05, auto=False,
                       max_bank=64, holdout=0.25, layers=("s8_expand",), name="auto-size")
    made = fit(list_images(category / "train/good")[:4], tmp_path / "m", given).card
    assert made.hyperparameters["size_choice"] != "given by the caller"
    assert made.hyperparameters["size"] == 256
    options = options_from_card(made)
    assert options == dataclasses.replace(given, size=None)  # size chosen again, rest kept
    assert options.layers == ("s8_expand",)


def test_unknown_and_missing_keys_and_overrides(card: ModelCard) -> None:
    hyper = {k: v for k, v in card.hyperparameters.items() if k not in ("dims", "margin")}
    hyper["quantization"] = {"format": "QDQ"}  # what an int8 copy adds
    hyper["from_the_future"] = 1
    odd = card.model_copy(update={"hyperparameters": hyper, "name": "line-b"})
    options = options_from_card(odd, threads=2, holdout=0.3)
    assert options == dataclasses.replace(TINY, name="line-b", threads=2, holdout=0.3)
    assert (options.dims, options.margin) == (FitOptions().dims, FitOptions().margin)
    assert options_from_card(odd, name="candidate").name == "candidate"
    with pytest.raises(ValueError, match="no bogus"):
        options_from_card(card, bogus=1)
    with pytest.raises(ValueError, match="size must be"):
        options_from_card(card, size=100)


# -- the refit --------------------------------------------------------------------------------

def test_too_few_labeled_good_frames_are_refused_by_name(
        store: Store, frames: list[np.ndarray], card: ModelCard, tmp_path: Path) -> None:
    line = Line(store, frames)
    line.add("pass", "good", n=MIN_REFIT_SAMPLES - 1)
    line.add("pass", "good", frame=False, n=2)
    line.add("pass", n=5)  # passes do not count toward the minimum
    samples = refit_samples(store, include_passes=True)
    out = tmp_path / "candidate"
    with pytest.raises(NotEnoughSamples) as refused:
        refit(store, card, out, samples=samples)
    assert isinstance(refused.value, InspectorError)
    message = str(refused.value)
    assert f"at least {MIN_REFIT_SAMPLES} labeled good" in message
    assert f"found {MIN_REFIT_SAMPLES - 1}" in message
    assert "2 more labeled good have no frame" in message
    assert not out.exists()


def test_refit_makes_a_loadable_model_that_says_where_it_came_from(
        store: Store, frames: list[np.ndarray], card: ModelCard, tmp_path: Path) -> None:
    line = Line(store, frames)
    goods = line.add("pass", "good", n=12)
    goods += line.add("reject", "good", n=2)
    line.add("reject", "defect", n=3)
    samples = refit_samples(store)
    assert samples.labeled_good == 14
    stages: list[tuple[str, float]] = []
    out = tmp_path / "candidate"

    result = refit(store, card, out, samples=samples,
                   progress=lambda stage, fraction: stages.append((stage, fraction)))

    model = load_model(out)
    assert model.sha256 == result.card.onnx_sha256 != card.onnx_sha256
    assert model.card.model_dump(mode="json") == result.card.model_dump(mode="json")
    ids_sha = hashlib.sha256("\n".join(map(str, sorted(goods))).encode()).hexdigest()
    assert model.card.metrics["refit"] == {
        "from_sha256": card.onnx_sha256, "from_name": card.name, "samples": 14,
        "labeled_good": 14, "unlabeled_passes": 0, "inspection_ids_sha256": ids_sha,
        "cameras": None, "since_ns": None}
    held_out = round(REFIT_HOLDOUT * 14)  # a refit sets its threshold on a quarter at least
    assert model.card.metrics["holdout_images"] == held_out == 4  # fit's own metrics kept
    assert model.card.training.count == 14 - held_out
    assert model.card.training.source == f"inspection store {store.root}"
    assert model.card.name == card.name
    assert model.card.hyperparameters["size"] == 128  # fitted the way the current one was
    assert model.card.hyperparameters["max_bank"] == 512
    assert [s for s, _ in stages] == ["reading samples", "fitting", "saving", "saved"]
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    prediction = Detector.open(out, threads=1, providers=("cpu",)).predict(frames[0])
    assert np.isfinite(prediction.score)


def test_a_refit_asked_to_stop_saves_nothing(store: Store, frames: list[np.ndarray],
                                            card: ModelCard, tmp_path: Path) -> None:
    Line(store, frames).add("pass", "good", n=MIN_REFIT_SAMPLES)
    out = tmp_path / "candidate"
    with pytest.raises(Cancelled):
        refit(store, card, out, samples=refit_samples(store), should_stop=lambda: True)
    assert not out.exists()


def test_a_frame_gone_before_the_fit_is_an_image_error(
        store: Store, frames: list[np.ndarray], card: ModelCard, tmp_path: Path) -> None:
    ids = Line(store, frames).add("pass", "good", n=MIN_REFIT_SAMPLES)
    samples = refit_samples(store)
    image_path(store, ids[3]).unlink()  # retention deleted it in between
    with pytest.raises(ImageError):
        refit(store, card, tmp_path / "candidate", samples=samples)

