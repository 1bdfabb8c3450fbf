"""Statistics: throughput, reject rate and yield over time, score histogram, latency, accounting."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from flask import Blueprint, current_app, jsonify, render_template, request

from web.api import current_accounting
from web.auth import login_required
from web.params import float_arg

bp = Blueprint("stats", __name__)
HISTOGRAM_BINS = 40
SCORE_SAMPLE = 10_000  # histogram and latency from the newest results in the range


@bp.get("/stats")
@login_required()
def page() -> Any:
    return render_template("stats.html")


@bp.get("/api/stats")
@login_required()
def data() -> Any:
    store = current_app.extensions["store"]
    hours = float_arg(request.args, "hours", 24.0, 0.1, 24 * 30.0)
    now = time.time_ns()
    since = now - int(hours * 3.6e12)
    bucket = max(60, int(hours * 3600 / 120))  # about 120 points per line
    timeline: dict[str, dict[int, dict[str, int]]] = {}
    for camera, start, verdict, count in store.timeline(since, bucket):
        timeline.setdefault(camera, {}).setdefault(int(start), {})[verdict] = count
    series = {}
    for camera, buckets in timeline.items():
        starts = sorted(buckets)
        totals = [sum(buckets[t].values()) for t in starts]
        series[camera] = {
            "t": starts,
            # The first and the current bucket are only partly inside the window: a rate
            # over the whole bucket would understate them.
            "per_minute": [n * 60 / _covered_s(t, bucket, since, now)
                           for t, n in zip(starts, totals, strict=True)],
            "reject_rate": [buckets[t].get("reject", 0) / n for t, n in zip(starts, totals,
                                                                             strict=True)],
            "yield": [buckets[t].get("pass", 0) / n for t, n in zip(starts, totals, strict=True)],
        }
    rows = store.scores_since(since, SCORE_SAMPLE)
    model = store.active_model()
    live = current_app.extensions["live"]
    if live is not None:
        card = live.detector.card
        model = {"sha256": live.detector.model.sha256, "name": card.name,
                 "threshold": card.threshold.value}
    return jsonify(bucket_s=bucket, since_s=since // 10**9, until_s=now // 10**9,
                   series=series, histogram=_histogram(rows, model),
                   latency=_latency(rows), model=model,
                   accounting=current_accounting())


def _histogram(rows: list[tuple], model: dict | None) -> dict[str, Any]:
    scores = np.array([r[2] for r in rows], dtype=np.float64)
    if scores.size == 0:
        return {"edges": [], "pass": [], "reject": [], "threshold": None}
    threshold = model["threshold"] if model else None
    high = max(scores.max(), threshold or 0) * 1.05
    edges = np.linspace(min(scores.min(), 0), high, HISTOGRAM_BINS + 1)
    rejected = np.array([r[1] != "pass" for r in rows])
    return {
        "edges": edges.tolist(),
        "pass": np.histogram(scores[~rejected], edges)[0].tolist(),
        "reject": np.histogram(scores[rejected], edges)[0].tolist(),
        "threshold": threshold,
    }


def _latency(rows: list[tuple]) -> dict[str, dict[str, float]]:
    by_camera: dict[str, list[float]] = {}
    for camera, _, _, latency in rows:
        if latency is not None:
            by_camera.setdefault(camera, []).append(latency)
    return {camera: {f"p{q}": round(float(np.percentile(v, q)), 2) for q in (50, 90, 99)}
            | {"n": len(v)} for camera, v in sorted(by_camera.items())}


def _covered_s(start_s: int, bucket_s: int, since_ns: int, now_ns: int) -> float:
    """Seconds of the bucket starting at ``start_s`` that lie between since and now."""
    covered = min(start_s + bucket_s, now_ns / 1e9) - max(start_s, since_ns / 1e9)
    return max(covered, 1.0)  # a bucket that has only just begun: at least a second
