"""Fitting a model from good images only.

1. Patch features of every image come from the model's own feature graph
   (``inspector.fitting.graph``), so fitting sees exactly what inference will see.
2. A PCA fitted on a sample of patches projects them to ``dims`` dimensions.
3. ``patchcore``: a greedy coreset of the projected patches is the memory bank.
   ``padim``: a Gaussian per patch location (cheap; for fixtured parts).
4. The complete graph is built. Unless the caller fixed it, the image score's
   share of the map is chosen on synthetic defects put on a held-out share of
   the good images (``inspector.fitting.selection``).
5. The held-out images are scored, and the first threshold is a high quantile of
   those scores (``calibrate`` refines it later).

The same images, options and seed give the same model bytes.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import onnx
from tqdm import tqdm

from inspector import __version__
from inspector.errors import ImageError
from inspector.evaluation import good_quantile_threshold, score_scale
from inspector.fitting.anomalies import MIN_SIDE as ANOMALY_MIN_SIDE
from inspector.fitting.anomalies import make_defects
from inspector.fitting.backbones import Backbone, load_backbone
from inspector.fitting.graph import OUTPUTS, FeatureSpec, feature_model, scoring_model
from inspector.fitting.memory import greedy_coreset, location_gaussians, pca
from inspector.fitting.selection import DEFAULT_TOP_FRACTION, Selection, choose_top_fraction
from inspector.imaging import read_image
from inspector.model import (
    Detector,
    LoadedModel,
    ModelCard,
    ScoreScale,
    Threshold,
    create_session,
    save_model,
    sha256_bytes,
    tiling,
)
from inspector.model import card as card_schema

logger = logging.getLogger(__name__)

PCA_SAMPLE = 60_000  # patches used to fit the projection
SYNTHETIC_PER_IMAGE = 2  # synthetic defects per held-out image when choosing
SELECTION_MAX_IMAGES = 60  # held-out images judged when choosing, at most
MAX_ASPECT = 4.0  # keep_aspect: longer side at most this many times the shorter
AUTO_SIZES = (256, 320)  # size=None: the input's shorter side is chosen in this range
ASPECT_TOLERANCE, SHARED_SHAPE = 0.1, 0.9  # 90% of frames within 10% of the median ratio
# Frames shrunk more than this many times to the model's input draw a warning that names
# the tile size which would keep their small defects (shrunk at most this much).
SHRINK_WARNING = 2.0


@dataclass(frozen=True)
class FitOptions:
    """Every choice a fit makes; recorded in the model card. Defaults hold for every dataset."""

    backbone: str = "efficientnet_lite0"
    method: Literal["patchcore", "padim"] = "patchcore"
    size: int | None = None  # the model input's (shorter) side; None: from the frames' size
    keep_aspect: bool = True  # model input shaped like the training frames, when they share one
    # The blocks' own outputs at strides 8 and 16 (docs/accuracy.md: better than the
    # expand convolutions of the textbook recipe on every set, and cheaper).
    layers: tuple[str, ...] = ("s8_block", "s16_block")
    dims: int = 256  # projected feature size: the space distances are measured in
    search_dims: int | None = 64  # nearest-neighbour search on this many leading dims,
    candidates: int = 8  # then exact distances over all ``dims`` for this many candidates
    search_block: int = 1  # candidates searched once per block of this many patches a side
    coreset_ratio: float = 0.1
    max_bank: int = 4096
    sigma: float = 4.0
    top_fraction: float | None = None  # image score: mean of this top share of the map;
    # None: chosen at fit on synthetic defects (inspector.fitting.selection)
    auto: bool = True  # False: no choosing; what is not given takes the fixed defaults
    holdout: float = 0.1
    quantile: float = 0.99
    margin: float = 0.25  # threshold: quantile + margin x (quantile - median) of good scores
    seed: int = 0
    batch: int = 8
    threads: int = 0
    tile: int | None = None  # inspect large frames as tiles of this many native pixels
    tile_overlap: int = 32
    name: str = "inspection-model"

    def __post_init__(self) -> None:
        problems = []
        if self.method not in ("patchcore", "padim"):
            problems.append(f"method must be patchcore or padim, got {self.method!r}")
        if self.size is not None and (not 32 <= self.size <= 2048 or self.size % 16):
            problems.append(f"size must be a multiple of 16 in 32..2048, got {self.size}")
        if not 0 < self.coreset_ratio <= 1:
            problems.append(f"coreset_ratio must be in (0, 1], got {self.coreset_ratio}")
        if (self.dims < 1 or self.max_bank < 1 or self.batch < 1 or self.candidates < 1
                or self.search_block < 1):
            problems.append("dims, max_bank, batch, candidates and search_block must be "
                            "positive")
        if self.search_dims is not None and self.search_dims < 1:
            problems.append(f"search_dims must be positive, got {self.search_dims}")
        if not 0 <= self.holdout < 1:
            problems.append(f"holdout must be in [0, 1), got {self.holdout}")
        if self.top_fraction is not None and not 0 < self.top_fraction <= 1:
            problems.append(f"top_fraction must be in (0, 1], got {self.top_fraction}")
        if not 0 < self.quantile <= 1:
            problems.append(f"quantile must be in (0, 1], got {self.quantile}")
        if self.tile is not None and not 0 <= self.tile_overlap < self.tile:
            problems.append(f"tile_overlap must be in [0, tile), got {self.tile_overlap}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class FitResult:
    card: ModelCard
    onnx: bytes
    seconds: dict[str, float] = field(default_factory=dict)


def fit(
    images: Sequence[Path],
    out_dir: Path | None,
    options: FitOptions = FitOptions(),
    progress: bool = False,
) -> FitResult:
    """Fit a model on good ``images`` and, when ``out_dir`` is given, save it there."""
    if len(images) < 2:
        raise ImageError(f"fitting needs at least 2 good images, got {len(images)}")
    started = time.perf_counter()
    timings: dict[str, float] = {}
    rng = np.random.default_rng(options.seed)
    order = rng.permutation(len(images))
    n_holdout = 0 if options.holdout == 0 else max(1, round(options.holdout * len(images)))
    n_holdout = min(n_holdout, len(images) - 1)
    fit_paths = [images[i] for i in sorted(order[n_holdout:])]
    holdout_paths = [images[i] for i in sorted(order[:n_holdout])]

    backbone = load_backbone(options.backbone)
    unknown = set(options.layers) - set(backbone.channels)
    if unknown:
        raise ValueError(f"backbone {backbone.name} has no layers {sorted(unknown)}; "
                         f"it has {sorted(backbone.channels)}")
    frames = _Frames(fit_paths, options)  # read once, one clear error per bad file
    spec = FeatureSpec(model_size(options, frames.frames), options.layers, sigma=options.sigma,
                       top_fraction=options.top_fraction or DEFAULT_TOP_FRACTION)

    t0 = time.perf_counter()
    raw = _session(feature_model(backbone, spec), options)
    channels = sum(backbone.channels[layer] for layer in options.layers)
    dims = min(options.dims, channels)
    per_image = max(1, math.ceil(PCA_SAMPLE / len(fit_paths)))
    samples = []
    for features in _run(raw, frames, options, progress, "features (1/2)"):
        flat = features.reshape(features.shape[0], channels, -1).transpose(0, 2, 1)
        for patches in flat:
            take = rng.choice(len(patches), min(per_image, len(patches)), replace=False)
            samples.append(patches[np.sort(take)])
    projection = pca(np.concatenate(samples), dims)
    timings["pca"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    projected = _session(feature_model(backbone, spec, projection), options)
    maps = np.concatenate(list(_run(projected, frames, options, progress, "features (2/2)")))
    timings["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    hyper = {k: v for k, v in asdict(options).items() if k not in ("batch", "threads", "name")}
    hyper["size"] = min(spec.size)
    hyper["feature_dims"] = dims  # ``dims``, or fewer when the layers have fewer channels
    hyper["size_choice"] = ("given by the caller" if options.size is not None else
                            f"the frames' shorter side within {AUTO_SIZES}")
    hyper["frames_shrunk"] = round(_shorter_side(frames.frames) / min(spec.size), 2)
    if hyper["frames_shrunk"] > SHRINK_WARNING and options.tile is None:
        logger.warning(_shrink_advice(frames.frames, hyper["frames_shrunk"], min(spec.size),
                                      options.tile_overlap))
    if options.method == "patchcore":
        patches = maps.transpose(0, 2, 3, 1).reshape(-1, dims)
        size = min(options.max_bank, max(1, math.ceil(options.coreset_ratio * len(patches))))
        chosen = greedy_coreset(patches, size, options.seed, progress=progress)
        bank = patches[chosen]
        hyper["bank_size"] = len(bank)
        scoring = {"bank": bank, "search_dims": options.search_dims,
                   "candidates": options.candidates, "search_block": options.search_block}
    else:
        scoring = {"gaussian": location_gaussians(maps)}
    timings["bank"] = time.perf_counter() - t0

    def build(spec: FeatureSpec) -> bytes:
        model = scoring_model(backbone, spec, projection, name=options.name, **scoring)
        return model.SerializeToString()

    holdout = [read_image(p) for p in holdout_paths]
    t0 = time.perf_counter()
    onnx_bytes = build(spec)
    hyper["selection"] = _why_not_chosen(options, holdout)
    if hyper["selection"] is None:
        selection = _select(LoadedModel(_card(options, backbone, spec, hyper, fit_paths,
                                              onnx_bytes), onnx_bytes, Path(".")),
                            holdout, options, progress)
        hyper["selection"] = selection.record()
        if selection.chosen != spec.top_fraction:
            spec = replace(spec, top_fraction=selection.chosen)
            onnx_bytes = build(spec)
    hyper["top_fraction"] = spec.top_fraction
    timings["selection"] = time.perf_counter() - t0

    card = _card(options, backbone, spec, hyper, fit_paths, onnx_bytes)
    t0 = time.perf_counter()
    if holdout:  # the first threshold, scored exactly as the line will score
        detector = Detector(LoadedModel(card, onnx_bytes, Path(out_dir or ".")), options.threads,
                            ("cpu",))
        scores = np.array([detector.predict(frame).score for frame in
                           tqdm(holdout, desc="holdout", disable=not progress, leave=False)])
        threshold = good_quantile_threshold(scores, options.quantile, options.margin)
        if "warning" in threshold.detail:
            logger.warning("threshold: %s", threshold.detail["warning"])
        card = card.model_copy(update={"threshold": threshold,
                                       "score_scale": score_scale(scores, threshold.value)})
    timings["threshold"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started
    card = card.model_copy(update={"metrics": {"fit_seconds": round(timings["total"], 2),
                                               "holdout_images": len(holdout_paths)}})
    if out_dir is not None:
        save_model(out_dir, card, onnx_bytes)
    logger.info("fitted %s on %d images in %.1f s", options.method, len(fit_paths),
                timings["total"])
    return FitResult(card, onnx_bytes, timings)


def _card(options: FitOptions, backbone: Backbone, spec: FeatureSpec, hyper: dict,
          fit_paths: Sequence[Path], onnx_bytes: bytes) -> ModelCard:
    """The card of a fitted model before its threshold is known."""
    return ModelCard(
        name=options.name,
        version=__version__,
        backbone={"name": backbone.name, "sha256": backbone.sha256, "layers": list(options.layers)},
        input=card_schema.InputSpec(size=spec.size, resize="bilinear, antialiased"),
        method=options.method,
        hyperparameters=hyper,
        training=card_schema.TrainingSet(
            count=len(fit_paths), fingerprint=fingerprint(fit_paths),
            source=str(Path(fit_paths[0]).parent),
        ),
        threshold=Threshold(value=float("inf"), method="manual",
                            detail={"note": "no holdout images; run inspector calibrate"}),
        score_scale=ScoreScale(low=0.0, high=1.0),
        outputs=OUTPUTS,
        tiling=None if options.tile is None else card_schema.Tiling(tile=options.tile,
                                                                   overlap=options.tile_overlap),
        onnx_sha256=sha256_bytes(onnx_bytes),
    )


def _why_not_chosen(options: FitOptions, holdout: Sequence[np.ndarray]) -> str | None:
    """Why the fit does not choose the image score itself, or None when it does."""
    if options.top_fraction is not None:
        return "top_fraction given by the caller"
    if not options.auto:
        return f"not chosen (--no-auto): top_fraction {DEFAULT_TOP_FRACTION}"
    if not holdout:
        return f"not chosen (no held-out images): top_fraction {DEFAULT_TOP_FRACTION}"
    if options.tile is not None:
        return f"not chosen with tiles yet: top_fraction {DEFAULT_TOP_FRACTION}"
    if min(min(frame.shape[:2]) for frame in holdout) < ANOMALY_MIN_SIDE:
        return (f"not chosen (frames under {ANOMALY_MIN_SIDE} px have no room for a synthetic "
                f"defect): top_fraction {DEFAULT_TOP_FRACTION}")
    return None


def _select(model: LoadedModel, holdout: Sequence[np.ndarray], options: FitOptions,
            progress: bool) -> Selection:
    """Judge the image-score candidates on the held-out images and synthetic defects on them."""
    # A large hold-out adds time, not judgement: an evenly spread subset is enough.
    step = max(1, math.ceil(len(holdout) / SELECTION_MAX_IMAGES))
    holdout = holdout[::step]
    defects = make_defects(holdout, options.seed, per_image=SYNTHETIC_PER_IMAGE,
                           model_side=min(model.card.input.size))
    detector = Detector(model, options.threads, ("cpu",))
    height, width = model.card.input.size

    def model_size_map(frame: np.ndarray) -> np.ndarray:
        anomaly_map = detector.predict(frame).anomaly_map
        return cv2.resize(anomaly_map, (width, height), interpolation=cv2.INTER_AREA)

    frames = [*holdout, *(d.image for d in defects)]
    maps = [model_size_map(f) for f in
            tqdm(frames, desc="choosing", disable=not progress, leave=False)]
    return choose_top_fraction(maps[:len(holdout)], maps[len(holdout):],
                               sorted({d.kind for d in defects}))


class _Frames:
    """The fit images, decoded once and kept as uint8 frames (or their tiles)."""

    def __init__(self, paths: Sequence[Path], options: FitOptions) -> None:
        self.frames: list[np.ndarray] = []
        for path in paths:
            frame = read_image(path)
            if options.tile is None:
                self.frames.append(frame)
            else:
                self.frames += [t.image for t in
                                tiling.split(frame, options.tile, options.tile_overlap)]

    def batches(self, size: int) -> Iterable[list[np.ndarray]]:
        for i in range(0, len(self.frames), size):
            yield self.frames[i : i + size]

    def __len__(self) -> int:
        return len(self.frames)


def _session(model: onnx.ModelProto, options: FitOptions):
    return create_session(model.SerializeToString(), options.threads, ("cpu",))


def _run(session, frames: _Frames, options: FitOptions, progress: bool, label: str) -> Iterable:
    """Run ``session`` over the frames in batches; frames of unequal sizes go one at a time."""
    bar = tqdm(total=len(frames), desc=label, unit="img", disable=not progress, leave=False)
    try:
        for batch in frames.batches(options.batch):
            groups = [batch] if len({f.shape for f in batch}) == 1 else [[f] for f in batch]
            for group in groups:
                yield session.run(None, {"image": np.stack(group)})[0]
                bar.update(len(group))
    finally:
        bar.close()


def input_side(options: FitOptions, frames: Sequence[np.ndarray]) -> int:
    """The model input's shorter side: ``size`` when given, else the frames' own shorter
    side, within AUTO_SIZES.

    Every halving of a frame blurs defects a few pixels wide further into their
    surroundings, so a frame is shrunk only as far as the time allows, and enlarging one
    adds no detail. 320 costs 1.56 times the time of 256, so the range stops there (larger
    frames with small defects want tiles); below 256 the backbone's stride-16 grid grows
    too coarse.
    """
    if options.size is not None:
        return options.size
    low, high = AUTO_SIZES
    return int(min(high, max(low, round(_shorter_side(frames) / 16) * 16)))


def _shorter_side(frames: Sequence[np.ndarray]) -> float:
    """The median of the frames' shorter sides, in their own pixels."""
    return float(np.median([min(f.shape[:2]) for f in frames]))


def _shrink_advice(frames: Sequence[np.ndarray], shrink: float, side: int, overlap: int) -> str:
    """What shrinking the frames ``shrink`` times to a ``side``-pixel input costs, and the
    tiles that avoid it."""
    tile = round(SHRINK_WARNING * side)
    height, width = (int(np.median([f.shape[axis] for f in frames])) for axis in (0, 1))
    count = (len(tiling.tile_origins(height, min(tile, height), overlap))
             * len(tiling.tile_origins(width, min(tile, width), overlap)))
    return (f"the frames ({height}x{width}) are shrunk {shrink:.1f}x to the model's {side}-pixel "
            f"input, so a defect {round(shrink * 4)} px wide in a frame is 4 px wide to the "
            f"model and smaller ones may go unseen; --tile {tile} inspects them in {count} tiles "
            f"shrunk at most {SHRINK_WARNING:g}x, each one model run")


def model_size(options: FitOptions, frames: Sequence[np.ndarray]) -> tuple[int, int]:
    """(height, width) the model resizes frames to, ``input_side`` being the shorter side.

    With ``keep_aspect`` and frames that share one shape (a fixed camera: nearly all within
    10% of the median aspect ratio), the model keeps that shape, up to MAX_ASPECT : 1, so
    thin defects on long parts are not squeezed away. Frames of many shapes (crops of
    varying size) have no one shape to keep: the model is square.
    """
    side = input_side(options, frames)
    ratios = np.array([f.shape[0] / f.shape[1] for f in frames])
    ratio = float(np.median(ratios))
    shared = np.mean(np.abs(ratios / ratio - 1) <= ASPECT_TOLERANCE) >= SHARED_SHAPE
    if not options.keep_aspect or not shared:
        return side, side
    ratio = min(max(ratio, 1 / MAX_ASPECT), MAX_ASPECT)
    longer = round(side * max(ratio, 1 / ratio) / 16) * 16
    return (longer, side) if ratio >= 1 else (side, longer)


def fingerprint(paths: Sequence[Path]) -> str:
    """sha256 over the sorted sha256 of every file: the same set of images, the same print."""
    digests = sorted(hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths)
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()
