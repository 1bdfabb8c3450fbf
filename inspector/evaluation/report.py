"""The visual evaluation report a QA engineer opens after ``inspector eval --report DIR``.

``write_report`` writes a self-contained folder: ``index.html`` (inline CSS, images by
relative file name, nothing fetched from the network), ``roc.png``, ``histogram.png`` and,
when there are any, ``false_rejects.png`` and ``escapes.png`` (grids of the worst examples,
each shown as the image next to its anomaly heat overlay).

A part counts as rejected (predicted defective) when its score is at or above the threshold.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from inspector.evaluation.figures import Example, grid, plot_histogram, plot_roc, write_image

INDEX_FILE = "index.html"
ROC_FILE = "roc.png"
HISTOGRAM_FILE = "histogram.png"
FALSE_REJECTS_FILE = "false_rejects.png"
ESCAPES_FILE = "escapes.png"
CLOSEST_GOOD_FILE = "closest_good.png"
CLOSEST_DEFECTIVE_FILE = "closest_defective.png"

FALSE_REJECTS_HEADING = "False rejects (good parts scored above threshold)"
ESCAPES_HEADING = "Escapes (defective parts scored below threshold)"

MAX_EXAMPLES = 12  # per grid
_CONFUSION_KEYS = ("tp", "fp", "tn", "fn")


def write_report(
    out_dir: str | Path,
    *,
    title: str,
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    metrics: dict[str, Any],
    false_rejects: Sequence[Example],
    escapes: Sequence[Example],
    score_low: float,
    score_high: float,
    closest_good: Sequence[Example] = (),
    closest_defective: Sequence[Example] = (),
) -> Path:
    """Write the evaluation report into ``out_dir`` (created if needed); return index.html's path.

    ``labels`` are True (or 1) for defective parts; ``scores`` are the image scores, higher
    meaning more anomalous. ``score_low``/``score_high`` scale the heat overlays in the
    grids (transparent at or below low, full colour at high). At most ``MAX_EXAMPLES`` of
    each list are drawn: the highest-scoring false rejects and the lowest-scoring escapes.
    An empty list writes no grid (a stale grid file from an earlier report is removed) and
    the page says "none", then shows in its place the parts nearest to being wrong:
    ``closest_good`` (the highest-scoring good parts) and ``closest_defective`` (the
    lowest-scoring defective ones), so a clean result still shows how close it was.
    """
    labels_arr, scores_arr = _check_inputs(labels, scores)
    threshold = _finite(threshold, "threshold")
    score_low = _finite(score_low, "score_low")
    score_high = _finite(score_high, "score_high")
    if not isinstance(metrics, Mapping):
        raise ValueError(f"metrics must be a mapping, got {type(metrics).__name__}")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    fpr, tpr, _ = _roc(labels_arr, scores_arr)
    auroc = _auc(fpr, tpr) if fpr.size else float("nan")
    plot_roc(out / ROC_FILE, labels_arr, scores_arr, threshold, fpr, tpr, auroc)
    plot_histogram(out / HISTOGRAM_FILE, labels_arr, scores_arr, threshold)

    shown_rejects = sorted(false_rejects, key=lambda e: e.score, reverse=True)[:MAX_EXAMPLES]
    shown_escapes = sorted(escapes, key=lambda e: e.score)[:MAX_EXAMPLES]
    near_good = [] if shown_rejects else sorted(
        closest_good, key=lambda e: e.score, reverse=True)[:MAX_EXAMPLES]
    near_defective = [] if shown_escapes else sorted(
        closest_defective, key=lambda e: e.score)[:MAX_EXAMPLES]
    for examples, file_name in ((shown_rejects, FALSE_REJECTS_FILE), (shown_escapes, ESCAPES_FILE),
                                (near_good, CLOSEST_GOOD_FILE),
                                (near_defective, CLOSEST_DEFECTIVE_FILE)):
        path = out / file_name
        if examples:
            write_image(path, grid(examples, score_low, score_high))
        else:
            path.unlink(missing_ok=True)

    page = _html(
        title=title,
        labels=labels_arr,
        scores=scores_arr,
        threshold=threshold,
        auroc=auroc,
        metrics=metrics,
        sections=(
            (FALSE_REJECTS_HEADING, FALSE_REJECTS_FILE, shown_rejects, len(false_rejects),
             "highest", (CLOSEST_GOOD_FILE, near_good, "good parts that scored highest")),
            (ESCAPES_HEADING, ESCAPES_FILE, shown_escapes, len(escapes), "lowest",
             (CLOSEST_DEFECTIVE_FILE, near_defective, "defective parts that scored lowest")),
        ),
        score_low=score_low,
        score_high=score_high,
    )
    index = out / INDEX_FILE
    index.write_text(page, encoding="utf-8")
    return index


# --- inputs -----------------------------------------------------------------------------------


def _finite(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a finite number, got {value!r}") from exc
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {number}")
    return number


def _check_inputs(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    labels_arr = np.asarray(labels)
    try:
        scores_arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"scores must be a 1-D array of numbers: {exc}") from exc
    if labels_arr.ndim != 1 or scores_arr.ndim != 1:
        raise ValueError(
            f"labels and scores must be 1-D arrays, got shapes {labels_arr.shape} "
            f"and {scores_arr.shape}"
        )
    if labels_arr.size != scores_arr.size:
        raise ValueError(
            f"labels and scores must have the same length, got {labels_arr.size} labels "
            f"and {scores_arr.size} scores"
        )
    if labels_arr.size == 0:
        raise ValueError("labels and scores must not be empty")
    if labels_arr.dtype != np.bool_:
        numeric = np.issubdtype(labels_arr.dtype, np.integer) or np.issubdtype(
            labels_arr.dtype, np.floating
        )
        if not numeric or not np.isin(labels_arr, (0, 1)).all():
            raise ValueError(
                "labels must be booleans (True = defective) or 0/1, "
                f"got {labels_arr.dtype} values {np.unique(labels_arr)[:5].tolist()}"
            )
        labels_arr = labels_arr.astype(bool)
    if not np.isfinite(scores_arr).all():
        bad = int(np.count_nonzero(~np.isfinite(scores_arr)))
        raise ValueError(f"scores must be finite, got {bad} NaN or infinite value(s)")
    return labels_arr, scores_arr


# --- ROC --------------------------------------------------------------------------------------


def _roc(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) with one point per distinct score, highest first, from (0, 0).

    Point ``i`` is the rate of parts with ``score >= thresholds[i]``; the first point has
    threshold +inf. Empty arrays when either class is missing (the curve is undefined).
    """
    positives = int(np.count_nonzero(labels))
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        empty = np.empty(0, dtype=np.float64)
        return empty, empty, empty
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    # last index of each run of equal scores: ties move TP and FP together
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    tps = np.cumsum(sorted_labels)[ends]
    fps = ends + 1 - tps
    tpr = np.r_[0.0, tps / positives]
    fpr = np.r_[0.0, fps / negatives]
    thresholds = np.r_[np.inf, sorted_scores[ends]]
    return fpr, tpr, thresholds


def _auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


# --- HTML -------------------------------------------------------------------------------------


def _format_value(value: Any) -> str:
    """Plain text for a metric value: floats to 4 significant digits, None as n/a."""
    if value is None:
        return "n/a"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return "n/a"
        return f"{number:.4g}"
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return ", ".join(f"{key}: {_format_value(item)}" for key, item in value.items())
    if isinstance(value, list | tuple | np.ndarray):
        return "[" + ", ".join(_format_value(item) for item in value) + "]"
    return str(value)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1640px; padding: 16px 24px 40px; color: #1d1d1f;
       background: #fafafa; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
table { border-collapse: collapse; margin: 8px 0; background: #fff; }
th, td { border: 1px solid #ccc; padding: 4px 12px; text-align: left; }
th { background: #f0f0f0; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.summary { color: #444; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; background: #fff; }
.none { font-style: italic; color: #666; }
.note { color: #555; font-size: 0.92em; }
footer { margin-top: 3em; color: #888; font-size: 0.85em; }
"""


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    if not metrics:
        return '<p class="none">none</p>'
    rows = "\n".join(
        f"<tr><th>{html.escape(str(key))}</th>"
        f'<td class="num">{html.escape(_format_value(value))}</td></tr>'
        for key, value in metrics.items()
    )
    return f'<table class="metrics">\n<tr><th>metric</th><th>value</th></tr>\n{rows}\n</table>'


def _confusion_table(metrics: Mapping[str, Any]) -> str:
    if not any(key in metrics for key in _CONFUSION_KEYS):
        return ""

    def count(key: str) -> str:
        return html.escape(_format_value(metrics.get(key)))

    return (
        "<h2>Confusion at the threshold</h2>\n"
        '<table class="confusion">\n'
        "<tr><th></th><th>rejected (score &ge; threshold)</th>"
        "<th>accepted (score &lt; threshold)</th></tr>\n"
        f'<tr><th>defective</th><td class="num">TP {count("tp")}</td>'
        f'<td class="num">FN {count("fn")} (escapes)</td></tr>\n'
        f'<tr><th>good</th><td class="num">FP {count("fp")} (false rejects)</td>'
        f'<td class="num">TN {count("tn")}</td></tr>\n'
        "</table>"
    )


def _examples_section(
    heading: str, file_name: str, shown: Sequence[Example], total: int, which: str,
    closest: tuple[str, Sequence[Example], str],
) -> str:
    parts = [f"<h2>{html.escape(heading)}</h2>"]
    if not shown:
        parts.append('<p class="none">none</p>')
        file_name, shown, what = closest
        if not shown:
            return "\n".join(parts)
        parts.append(f'<p class="note">Closest to the threshold: the {len(shown)} {what}.</p>')
    elif total > len(shown):
        parts.append(
            f'<p class="note">{total} in all; showing the {len(shown)} {which}-scoring.</p>'
        )
    else:
        parts.append(f'<p class="note">{total} in all.</p>')
    parts.append(
        f'<p><img src="{html.escape(file_name)}" alt="{html.escape(heading)}"></p>'
        '<p class="note">Each example: the image, then its anomaly heat overlay.</p>'
    )
    rows = "\n".join(
        f"<tr><td>{html.escape(example.name)}</td><td>{html.escape(example.label)}</td>"
        f'<td class="num">{example.score:.4g}</td></tr>'
        for example in shown
    )
    parts.append(f"<table>\n<tr><th>name</th><th>label</th><th>score</th></tr>\n{rows}\n</table>")
    return "\n".join(parts)


def _html(
    *,
    title: str,
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    auroc: float,
    metrics: Mapping[str, Any],
    sections: Sequence[tuple[str, str, Sequence[Example], int, str,
                             tuple[str, Sequence[Example], str]]],
    score_low: float,
    score_high: float,
) -> str:
    good = int(np.count_nonzero(~labels))
    defective = int(np.count_nonzero(labels))
    auroc_text = "n/a (needs both classes)" if math.isnan(auroc) else f"{auroc:.4f}"
    title_html = html.escape(str(title))
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = [
        f"<h1>{title_html}</h1>",
        f'<p class="summary">{scores.size} images: {good} good, {defective} defective. '
        f"Threshold <strong>{threshold:.4g}</strong> (a part is rejected when its score is "
        f"at or above it). AUROC {auroc_text}.</p>",
        "<h2>Metrics</h2>",
        _metrics_table(metrics),
        f"<p>Threshold: <strong>{threshold:.4g}</strong></p>",
    ]
    confusion = _confusion_table(metrics)
    if confusion:
        body.append(confusion)
    body += [
        "<h2>Charts</h2>",
        '<div class="charts">',
        f'<img src="{ROC_FILE}" alt="ROC curve">',
        f'<img src="{HISTOGRAM_FILE}" alt="Score histogram of good and defective parts">',
        "</div>",
        f'<p class="note">Heat overlays: transparent at score {score_low:.4g} or below, '
        f"full colour at {score_high:.4g}.</p>",
    ]
    body += [_examples_section(*section) for section in sections]
    body.append(f"<footer>Generated {generated}.</footer>")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title_html}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
