"""The shadow run: a candidate model scored beside the active one on the labeled history.

Before a QA engineer promotes a refit model, both models score every labeled inspection
whose frame the store kept. The report says what promoting would have changed: false
rejects (labeled good, rejected) and escapes (labeled defect, passed) before and after,
the inspections whose verdict flips, and the candidate's trade-off over thresholds, so
that promotion is a decision made on the line's own history. Both models score the kept
JPEG, not the raw frame the line saw, so absolute counts can differ from the line's; the
comparison between the two is like for like.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspector.errors import ImageError, InspectorError
from inspector.evaluation import binary_report, roc_auc, threshold_effects
from inspector.imaging import read_image
from inspector.loop.jobs import Cancelled
from inspector.model import Detector, LoadedModel
from inspector.store import Store

logger = logging.getLogger(__name__)

CURVE_POINTS = 50  # enough for a UI to draw the threshold's effect, small enough to send
_COLUMNS = "id, camera, seq, part_id, inspected_ns, label, defect_type, image_path, thumb_path"


class NoLabeledHistory(InspectorError):
    """Nothing to score: no labeled inspection with a readable stored frame."""

    def __init__(self, lacking_frame: int, unreadable: int = 0, excluded: int = 0) -> None:
        self.lacking_frame = lacking_frame
        self.unreadable = unreadable
        self.excluded = excluded
        why = f"{lacking_frame} labeled inspection(s) lack a stored frame"
        if unreadable:
            why += f", {unreadable} stored frame(s) are unreadable"
        if excluded:
            why += f", {excluded} were used to fit the candidate"
        super().__init__(f"no labeled inspection with a stored frame to score ({why}); label "
                         "inspections whose frames were kept on the review pages")


def _frame_path(store: Store, rel: str | None) -> Path | None:
    """The file a stored ``image_path`` names; None for none or one outside the store's
    images folder (as ``ImageFiles.resolve``: paths come from the database, never follow
    one out)."""
    if not rel:
        return None
    path = Path(rel)
    if path.is_absolute() or ".." in path.parts or path.parts[:1] != (store.images.name,):
        return None
    return store.root / path


def scope(cameras: Sequence[str] | str | None, since_ns: int | None
          ) -> tuple[list[str], list[Any]]:
    """SQL conditions and parameters for the part of the history a refit or a shadow run
    reads: these ``cameras`` (None: all; a string is one camera), since ``since_ns``."""
    clauses: list[str] = []
    params: list[Any] = []
    if cameras is not None:
        chosen = list(dict.fromkeys([cameras] if isinstance(cameras, str) else cameras))
        clauses.append(f"camera IN ({', '.join('?' * len(chosen))})")
        params.extend(chosen)
    if since_ns is not None:
        clauses.append("inspected_ns >= ?")
        params.append(int(since_ns))
    return clauses, params


def labeled_history(
    store: Store, cameras: Sequence[str] | None = None, since_ns: int | None = None
) -> tuple[list[dict], int]:
    """The labeled (good or defect) inspections whose frame is on disk, oldest first, each
    with its absolute ``frame_path``; and how many labeled ones lack a frame (none kept,
    or the file gone). ``cameras`` None means every camera; ``since_ns`` by inspected_ns."""
    clauses, params = scope(cameras, since_ns)
    clauses.append("label IN ('good', 'defect')")
    # Store has no public query for this (its ``search`` serves the review page: newest
    # first, one camera, paged), so read through its Database as the store's own parts do:
    # one consistent snapshot however labels change meanwhile.
    rows = store._db.query(
        f"SELECT {_COLUMNS} FROM inspections WHERE {' AND '.join(clauses)}"
        " ORDER BY inspected_ns, id", params)
    found, lacking = [], 0
    for row in rows:
        path = _frame_path(store, row["image_path"])
        if path is None or not path.is_file():
            lacking += 1
        else:
            found.append({**dict(row), "frame_path": path})
    return found, lacking


def _confusion(defect: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, int]:
    # binary_report's rule is the line's (``Prediction.verdict``): reject when score >= threshold.
    counts = binary_report(defect, scores, threshold)
    return {"true_rejects": int(counts["tp"]), "false_rejects": int(counts["fp"]),
            "true_passes": int(counts["tn"]), "escapes": int(counts["fn"])}


@dataclass(frozen=True)
class Side:
    """One model's decisions on the scored history: before (active) or after (candidate)."""

    model: str
    sha256: str
    threshold: float
    confusion: dict[str, int]
    auroc: float | None  # None when only one class is labeled: ranking is undefined

    @classmethod
    def of(cls, model: LoadedModel, defect: np.ndarray, scores: np.ndarray) -> Side:
        both = 0 < np.count_nonzero(defect) < defect.size
        threshold = model.card.threshold.value
        return cls(model.card.name, model.sha256, threshold,
                   _confusion(defect, scores, threshold),
                   roc_auc(defect, scores) if both else None)

    def to_json(self) -> dict[str, Any]:
        c = self.confusion
        return {"model": self.model, "sha256": self.sha256, "threshold": self.threshold,
                "confusion": dict(c), "false_rejects": c["false_rejects"],
                "escapes": c["escapes"], "auroc": self.auroc,
                "rejects": c["true_rejects"] + c["false_rejects"]}


@dataclass(frozen=True)
class ShadowReport:
    """What promoting the candidate would have changed on the labeled history."""

    labeled: int  # scored by both models
    lacking_frame: int
    unreadable: int
    excluded_training: int  # labeled frames the candidate was fitted on, left out
    before: Side
    after: Side
    changed: list[dict[str, Any]]  # the inspections whose verdict flips
    curve: list[dict[str, Any]]  # the candidate's {threshold, false_rejects, escapes}

    def to_json(self) -> dict[str, Any]:
        return {"labeled": self.labeled, "lacking_frame": self.lacking_frame,
                "unreadable": self.unreadable, "excluded_training": self.excluded_training,
                "before": self.before.to_json(),
                "after": self.after.to_json(), "changed": [dict(c) for c in self.changed],
                "curve": [dict(p) for p in self.curve]}


def shadow_run(
    store: Store,
    active: LoadedModel,
    candidate: LoadedModel,
    *,
    cameras: Sequence[str] | None = None,
    since_ns: int | None = None,
    threads: int = 0,
    providers: Sequence[str] = ("cpu",),
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    exclude_ids: Collection[int] = (),
) -> ShadowReport:
    """Score the labeled history with both models and compare their verdicts.

    Frames are read one at a time (memory stays bounded); an unreadable one is skipped and
    counted. ``progress(done, total)`` follows every frame; ``should_stop()`` returning
    True raises ``Cancelled``. The CPU by default: a background job leaves any accelerator
    to the line. Raises ``NoLabeledHistory`` when there is nothing to score.
    """
    rows, lacking = labeled_history(store, cameras, since_ns)
    # A model is not judged on the frames it learned from: they would flatter it.
    training = set(exclude_ids)
    judged = [row for row in rows if row["id"] not in training]
    excluded, rows = len(rows) - len(judged), judged
    if not rows:
        raise NoLabeledHistory(lacking, excluded=excluded)
    # The active model is scored again too, rather than trusting the stored scores: those
    # came from whichever model and threshold ran at the time (and from the raw frame, not
    # the kept JPEG); only both models on the same pixels compare like with like.
    before = Detector(active, threads, providers)
    after = Detector(candidate, threads, providers)
    scored: list[tuple[dict, float, str, float, str]] = []
    unreadable, first_error = 0, None
    for done, row in enumerate(rows, 1):
        if should_stop is not None and should_stop():
            raise Cancelled(f"shadow run stopped after {done - 1} of {len(rows)} frames")
        try:
            frame = read_image(row["frame_path"])
        except ImageError as exc:
            unreadable += 1
            first_error = first_error or exc
        else:
            b, a = before.predict(frame), after.predict(frame)
            scored.append((row, b.score, b.verdict, a.score, a.verdict))
        if progress is not None:
            progress(done, len(rows))
    if unreadable:
        logger.warning("shadow run skipped %d unreadable frame(s), e.g. %s", unreadable,
                       first_error)
    if not scored:
        raise NoLabeledHistory(lacking, unreadable, excluded)

    defect = np.array([row["label"] == "defect" for row, *_ in scored])
    before_scores = np.array([s[1] for s in scored])
    after_scores = np.array([s[3] for s in scored])
    changed = [
        {"id": row["id"], "camera": row["camera"], "inspected_ns": row["inspected_ns"],
         "label": row["label"], "defect_type": row["defect_type"], "before_score": b_score,
         "after_score": a_score, "before_verdict": b_verdict, "after_verdict": a_verdict,
         "thumb_path": row["thumb_path"]}
        for row, b_score, b_verdict, a_score, a_verdict in scored if b_verdict != a_verdict]
    return ShadowReport(
        labeled=len(scored), lacking_frame=lacking, unreadable=unreadable,
        excluded_training=excluded,
        before=Side.of(active, defect, before_scores),
        after=Side.of(candidate, defect, after_scores),
        changed=changed,
        curve=threshold_effects(after_scores[~defect], after_scores[defect], points=CURVE_POINTS))
