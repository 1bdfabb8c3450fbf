"""Re-fitting: a candidate model fitted from the store's labeled good frames, the same way
the current model was fitted.

- ``refit_samples``: which stored frames a refit fits on (labeled good; optionally
  unlabeled passes), and how many labeled good ones have no frame left
- ``options_from_card``: the ``FitOptions`` that made a model, read back from its card
- ``refit``: fit the candidate into a folder, its provenance in ``card.metrics["refit"]``
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from inspector.errors import InspectorError
from inspector.fitting import FitOptions, FitResult, fit
from inspector.loop.jobs import Cancelled
from inspector.loop.shadow import scope
from inspector.model import ModelCard, save_model
from inspector.store import Store

logger = logging.getLogger(__name__)

# Labeled good frames a refit needs at the least. The fit holds out a share of them
# (FitOptions.holdout, 10% by default) to set the candidate's threshold on good frames it did
# not learn from, and learns the memory bank from the rest: under ten frames that is a
# threshold from one frame's score and a bank of a handful of parts.
MIN_REFIT_SAMPLES = 10
# The fit keeps every frame decoded (4 MB for a 1.3 MP camera's) and its feature map (about
# 1 MiB at 256 px) in memory, on a box that is inspecting at the same time; the usual
# training sets (MVTec AD: 60-391 good images) hold a few hundred. Over it the newest are kept.
MAX_REFIT_SAMPLES = 300
REFIT_HOLDOUT = 0.25  # share of the frames that sets the candidate's threshold (at least)
# What fit writes into ``hyperparameters["size_choice"]`` when the caller fixed the size,
# and into ``hyperparameters["selection"]`` when the caller fixed the image score's share.
_GIVEN_SIZE = "given by the caller"
_GIVEN_TOP_FRACTION = "top_fraction given by the caller"
# FitOptions fields that are about the machine a fit runs on, not the model it makes; the
# card does not record them (fit leaves them out of ``hyperparameters``).
_MACHINE_FIELDS = ("batch", "threads", "name")


class NotEnoughSamples(InspectorError):
    """Too few labeled good frames in the store to fit a candidate on."""


@dataclass(frozen=True)
class RefitSamples:
    """The stored frames a refit fits on, in inspection id order, and what was left out.

    ``paths[i]`` is the frame of inspection ``ids[i]``. ``lacking_frame`` counts the labeled
    good rows (of the same filters) that have no frame: none was kept, or its file is gone.
    ``left_out`` counts frames over ``limit`` (the newest are kept, labeled good first).
    """

    paths: tuple[Path, ...]
    ids: tuple[int, ...]
    labeled_good: int
    unlabeled_passes: int
    lacking_frame: int
    left_out: int = 0
    cameras: tuple[str, ...] | None = None
    since_ns: int | None = None
    include_passes: bool = False
    limit: int | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def ids_sha256(self) -> str:
        """sha256 of the sorted inspection ids, one decimal a line: the same rows, the same
        print (the frames themselves are fingerprinted in ``card.training``)."""
        return hashlib.sha256("\n".join(str(i) for i in sorted(self.ids)).encode()).hexdigest()

    def describe(self) -> str:
        """One line for the UI and the CLI, e.g. ``"42 frames: 30 labeled good, 12 unlabeled
        passes; 3 labeled good have no frame"``."""
        parts = [f"{self.labeled_good} labeled good"]
        if self.include_passes:
            parts.append(f"{self.unlabeled_passes} unlabeled passes")
        line = f"{len(self.paths)} frame{'' if len(self.paths) == 1 else 's'}: " + ", ".join(parts)
        if self.lacking_frame:
            line += (f"; {self.lacking_frame} labeled good "
                     f"{'has' if self.lacking_frame == 1 else 'have'} no frame")
        if self.left_out:
            line += f"; {self.left_out} more left out (at most {self.limit}, newest kept)"
        return line

    def to_json(self) -> dict[str, Any]:
        return {"frames": len(self.paths), "labeled_good": self.labeled_good,
                "unlabeled_passes": self.unlabeled_passes, "lacking_frame": self.lacking_frame,
                "left_out": self.left_out, "min_labeled_good": MIN_REFIT_SAMPLES,
                "enough": self.labeled_good >= MIN_REFIT_SAMPLES,
                "cameras": None if self.cameras is None else list(self.cameras),
                "since_ns": self.since_ns, "include_passes": self.include_passes,
                "summary": self.describe()}


def refit_samples(
    store: Store,
    *,
    cameras: Sequence[str] | None = None,
    since_ns: int | None = None,
    include_passes: bool = False,
    limit: int | None = MAX_REFIT_SAMPLES,
) -> RefitSamples:
    """The frames to fit on: rows labeled good with a frame on disk, plus, with
    ``include_passes``, unlabeled passes with one. Never a row labeled defect, never an
    error (its frame is one the model could not score), whatever its label.

    ``cameras`` (None: all) and ``since_ns`` (``inspected_ns`` at or after) filter both
    kinds. At most ``limit`` frames (None: all): the newest labeled good first, then the
    newest passes.
    """
    if isinstance(cameras, str):
        cameras = (cameras,)
    chosen_cameras = None if cameras is None else tuple(dict.fromkeys(cameras))
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    clauses = ["verdict != 'error'",
               "(label = 'good'" + (" OR (label IS NULL AND verdict = 'pass'"
                                   " AND image_path IS NOT NULL))" if include_passes else ")")]
    scoped, params = scope(chosen_cameras, since_ns)
    clauses += scoped
    # The store has no public query for "labeled good or unlabeled pass, of these cameras,
    # with or without a frame" that reads only ids and paths (``search`` reads and parses
    # every column of every row, and filters one camera): read its database directly, and
    # resolve paths with its own rule (never a path outside root/images).
    rows = store._db.query(
        f"SELECT id, label, image_path FROM inspections WHERE {' AND '.join(clauses)}"
        " ORDER BY inspected_ns DESC, id DESC", params)
    goods: list[tuple[int, Path]] = []
    pass_rows = []
    lacking = 0
    for row in rows:  # newest first
        if row["label"] != "good":
            pass_rows.append(row)
            continue
        path = None if row["image_path"] is None else store._files.resolve(row["image_path"])
        if path is None or not path.is_file():
            lacking += 1
        else:
            goods.append((int(row["id"]), path))
    left_out = 0
    if limit is not None and len(goods) > limit:
        goods, left_out = goods[:limit], len(goods) - limit
    passes: list[tuple[int, Path]] = []
    for n, row in enumerate(pass_rows):
        if limit is not None and len(goods) + len(passes) >= limit:
            left_out += len(pass_rows) - n  # over the cap: counted, not looked for on disk
            break
        path = store._files.resolve(row["image_path"])
        if path is not None and path.is_file():
            passes.append((int(row["id"]), path))
    chosen = sorted(goods + passes)  # by id: the same rows, the same order, the same fit
    return RefitSamples(
        paths=tuple(p for _, p in chosen), ids=tuple(i for i, _ in chosen),
        labeled_good=len(goods), unlabeled_passes=len(passes), lacking_frame=lacking,
        left_out=left_out, cameras=chosen_cameras,
        since_ns=None if since_ns is None else int(since_ns), include_passes=include_passes,
        limit=limit)


def options_from_card(card: ModelCard, **overrides: Any) -> FitOptions:
    """The ``FitOptions`` that made the model of ``card``, so that a candidate is fitted the
    same way; ``overrides`` (any FitOptions field) win.

    What the fit chose itself is left to choose again on the new frames: ``size`` when
    ``size_choice`` says it came from the frames, ``top_fraction`` when it was chosen on
    synthetic defects (or not chosen for want of held-out frames, tiles...). Keys FitOptions
    does not have (``bank_size``, a quantization record) are ignored; missing ones take
    FitOptions' defaults. ``name`` is the card's unless overridden.
    """
    known = {f.name: f for f in fields(FitOptions)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"FitOptions has no {', '.join(unknown)}; it has {', '.join(known)}")
    hyper = card.hyperparameters
    values: dict[str, Any] = {k: v for k, v in hyper.items()
                              if k in known and k not in _MACHINE_FIELDS}
    if "size_choice" in hyper and hyper["size_choice"] != _GIVEN_SIZE:
        values["size"] = None
    selection = hyper.get("selection")
    if selection is not None and selection != _GIVEN_TOP_FRACTION:
        values["top_fraction"] = None
    for key, value in values.items():
        if isinstance(known[key].default, tuple) and isinstance(value, list):
            values[key] = tuple(value)  # JSON has no tuples (``layers``)
    values["name"] = card.name
    values.update(overrides)
    return FitOptions(**values)


def refit(
    store: Store,
    card: ModelCard,
    out_dir: Path,
    *,
    samples: RefitSamples | None = None,
    progress: Callable[[str, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    **overrides: Any,
) -> FitResult:
    """Fit a candidate for the model of ``card`` on ``samples`` (default: ``refit_samples``
    of the whole store) with the options that made it (``options_from_card``, ``overrides``
    winning), and save it as a model folder in ``out_dir``.

    Refuses (``NotEnoughSamples``) under ``MIN_REFIT_SAMPLES`` labeled good frames. The card
    records where the candidate came from in ``metrics["refit"]``. ``progress`` gets coarse
    stages and a fraction; ``should_stop`` is asked between stages (not during the fit
    itself), and a yes raises ``Cancelled`` before anything is saved.
    """
    def report(stage: str, fraction: float) -> None:
        if progress is not None:
            progress(stage, fraction)

    def check_stop() -> None:
        if should_stop is not None and should_stop():
            raise Cancelled("refit cancelled; no model saved")

    report("reading samples", 0.0)
    if samples is None:
        samples = refit_samples(store)
    check_stop()
    if samples.labeled_good < MIN_REFIT_SAMPLES:
        lacking = (f"; {samples.lacking_frame} more labeled good have no frame kept (none "
                   "stored, or deleted)" if samples.lacking_frame else "")
        raise NotEnoughSamples(
            f"a refit needs at least {MIN_REFIT_SAMPLES} labeled good frames, found "
            f"{samples.labeled_good}{lacking}; label more good parts first")
    options = options_from_card(card, **overrides)
    if "holdout" not in overrides and options.holdout < REFIT_HOLDOUT:
        # A line's labeled set is small (tens of frames, where a dataset has hundreds): a
        # larger share sets the threshold, so it rests on more than one or two frames.
        options = dataclasses.replace(options, holdout=REFIT_HOLDOUT)
    logger.info("refitting %s (%s…) on %s", card.name, card.onnx_sha256[:12], samples.describe())
    report("fitting", 0.05)
    result = fit(list(samples.paths), None, options)
    check_stop()
    report("saving", 0.95)
    provenance = {
        "from_sha256": card.onnx_sha256,
        "from_name": card.name,
        "samples": len(samples),
        "labeled_good": samples.labeled_good,
        "unlabeled_passes": samples.unlabeled_passes,
        "inspection_ids_sha256": samples.ids_sha256(),
        "cameras": None if samples.cameras is None else list(samples.cameras),
        "since_ns": samples.since_ns,
    }
    training = result.card.training.model_copy(update={"source": f"inspection store {store.root}"})
    result.card = result.card.model_copy(update={
        "training": training, "metrics": {**result.card.metrics, "refit": provenance}})
    save_model(out_dir, result.card, result.onnx)
    report("saved", 1.0)
    return result

