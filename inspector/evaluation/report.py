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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from inspector.imaging import as_bgr, heatmap_overlay

INDEX_FILE = "index.html"
ROC_FILE = "roc.png"
HISTOGRAM_FILE = "histogram.png"
FALSE_REJECTS_FILE = "false_rejects.png"
ESCAPES_FILE = "escapes.png"

FALSE_REJECTS_HEADING = "False rejects (good parts scored above threshold)"
ESCAPES_HEADING = "Escapes (defective parts scored below threshold)"

MAX_EXAMPLES = 12  # per grid
GRID_COLUMNS = 3  # examples per grid row; each example is two tiles wide
TILE = 256  # px, side of the square each image or overlay is fitted into
CAPTION_HEIGHT = 48  # px, dark bar under each example
GAP = 8  # px between examples and around the grid
DPI = 110

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.5
_BACKGROUND = (24, 24, 24)
_CAPTION_BAR = (40, 40, 40)
_TEXT = (235, 235, 235)
_GOOD_TEXT = (120, 220, 120)
_DEFECT_TEXT = (60, 170, 255)
_CONFUSION_KEYS = ("tp", "fp", "tn", "fn")


@dataclass(frozen=True, eq=False)
class Example:
    """One image shown in a report grid.

    ``label`` is ``"good"`` or a defect type name; ``image`` is uint8 BGR (H, W, 3) or grey
    (H, W); ``anomaly_map`` is a float (h, w) map at any resolution. Equality is identity
    (``eq=False``): comparing numpy arrays field by field has no single truth value.
    """

    name: str
    label: str
    score: float
    image: np.ndarray
    anomaly_map: np.ndarray

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not isinstance(self.label, str):
            raise ValueError(
                f"Example name and label must be str, got {type(self.name).__name__} "
                f"and {type(self.label).__name__}"
            )
        score = float(self.score)
        if not math.isfinite(score):
            raise ValueError(f"Example {self.name!r}: score must be finite, got {score}")
        object.__setattr__(self, "score", score)
        image, amap = self.image, self.anomaly_map
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
            got = _describe(image)
            raise ValueError(
                f"Example {self.name!r}: image must be uint8 (H, W, 3) BGR or (H, W) grey, "
                f"got {got}"
            )
        if not isinstance(amap, np.ndarray) or amap.ndim != 2:
            raise ValueError(
                f"Example {self.name!r}: anomaly_map must be a float (h, w) array, "
                f"got {_describe(amap)}"
            )


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
) -> Path:
    """Write the evaluation report into ``out_dir`` (created if needed); return index.html's path.

    ``labels`` are True (or 1) for defective parts; ``scores`` are the image scores, higher
    meaning more anomalous. ``score_low``/``score_high`` scale the heat overlays in the
    grids (transparent at or below low, full colour at high). At most ``MAX_EXAMPLES`` of
    each list are drawn: the highest-scoring false rejects and the lowest-scoring escapes.
    An empty list writes no grid (a stale grid file from an earlier report is removed) and
    the page says "none".
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
    _plot_roc(out / ROC_FILE, labels_arr, scores_arr, threshold, fpr, tpr, auroc)
    _plot_histogram(out / HISTOGRAM_FILE, labels_arr, scores_arr, threshold)

    shown_rejects = sorted(false_rejects, key=lambda e: e.score, reverse=True)[:MAX_EXAMPLES]
    shown_escapes = sorted(escapes, key=lambda e: e.score)[:MAX_EXAMPLES]
    for examples, file_name in ((shown_rejects, FALSE_REJECTS_FILE), (shown_escapes, ESCAPES_FILE)):
        path = out / file_name
        if examples:
            _write_image(path, _grid(examples, score_low, score_high))
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
            (
                FALSE_REJECTS_HEADING,
                FALSE_REJECTS_FILE,
                shown_rejects,
                len(false_rejects),
                "highest",
            ),
            (ESCAPES_HEADING, ESCAPES_FILE, shown_escapes, len(escapes), "lowest"),
        ),
        score_low=score_low,
        score_high=score_high,
    )
    index = out / INDEX_FILE
    index.write_text(page, encoding="utf-8")
    return index


# --- inputs -----------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {tuple(value.shape)}"
    return type(value).__name__


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


# --- charts -----------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself; no pyplot, no global backend state
    return figure


def _save(figure: Figure, path: Path) -> None:
    figure.savefig(path, dpi=DPI, facecolor="white")
    figure.clear()


def _plot_roc(
    path: Path,
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    fpr: np.ndarray,
    tpr: np.ndarray,
    auroc: float,
) -> None:
    figure = _figure(6.0, 5.6)
    ax = figure.add_subplot()
    good, defective = int(np.count_nonzero(~labels)), int(np.count_nonzero(labels))
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    if fpr.size:
        ax.plot(fpr, tpr, color="tab:blue", linewidth=2, label=f"ROC (AUROC = {auroc:.4f})")
        op_fpr = float(np.mean(scores[~labels] >= threshold))
        op_tpr = float(np.mean(scores[labels] >= threshold))
        ax.plot(
            [op_fpr],
            [op_tpr],
            marker="o",
            markersize=9,
            linestyle="none",
            markerfacecolor="tab:red",
            markeredgecolor="black",
            label=f"threshold {threshold:.4g}: FPR {op_fpr:.3f}, TPR {op_tpr:.3f}",
        )
    else:
        ax.text(
            0.5,
            0.5,
            "ROC undefined:\nneeds both good and defective parts",
            ha="center",
            va="center",
            fontsize=12,
            transform=ax.transAxes,
        )
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("False positive rate (good parts rejected)", fontsize=11)
    ax.set_ylabel("True positive rate (defective parts caught)", fontsize=11)
    ax.set_title(f"ROC: {good} good, {defective} defective", fontsize=13)
    ax.tick_params(labelsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=10)
    _save(figure, path)


def _plot_histogram(path: Path, labels: np.ndarray, scores: np.ndarray, threshold: float) -> None:
    figure = _figure(7.5, 4.5)
    ax = figure.add_subplot()
    low, high = float(scores.min()), float(scores.max())
    if high <= low:
        low, high = low - 0.5, high + 0.5
    n_bins = int(np.clip(2 * math.ceil(math.sqrt(scores.size)), 10, 60))
    bins = np.linspace(low, high, n_bins + 1)
    for mask, name, colour in ((~labels, "good", "tab:blue"), (labels, "defective", "tab:red")):
        values = scores[mask]
        ax.hist(
            values,
            bins=bins,
            alpha=0.5,
            color=colour,
            edgecolor=colour,
            linewidth=0.8,
            label=f"{name} (n={values.size})",
        )
    ax.axvline(
        threshold,
        color="black",
        linestyle="--",
        linewidth=1.5,
        label=f"threshold = {threshold:.4g}",
    )
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Anomaly score", fontsize=11)
    ax.set_ylabel("Count (images)", fontsize=11)
    ax.set_title("Score distribution: good vs defective", fontsize=13)
    ax.tick_params(labelsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=10)
    _save(figure, path)


# --- example grids ----------------------------------------------------------------------------


def _fit(image: np.ndarray, side: int) -> np.ndarray:
    """Scale (up or down) so the longer side is ``side``, keeping the aspect ratio."""
    height, width = image.shape[:2]
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation)


def _paste_centered(canvas: np.ndarray, tile: np.ndarray, x: int, y: int) -> None:
    height, width = tile.shape[:2]
    top = y + (TILE - height) // 2
    left = x + (TILE - width) // 2
    canvas[top : top + height, left : left + width] = tile


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")  # Hershey fonts are ASCII only


def _fit_text(text: str, max_width: int) -> str:
    text = _ascii(text)
    if cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)[0][0] <= max_width:
        return text
    while text and cv2.getTextSize(text + "...", _FONT, _FONT_SCALE, 1)[0][0] > max_width:
        text = text[:-1]
    return text + "..."


def _cell(example: Example, low: float, high: float) -> np.ndarray:
    width = 2 * TILE + GAP
    cell = np.full((TILE + CAPTION_HEIGHT, width, 3), _BACKGROUND, dtype=np.uint8)
    try:
        image = _fit(as_bgr(example.image, "image"), TILE)
        heat = heatmap_overlay(image, example.anomaly_map, low, high)
    except ValueError as exc:
        raise ValueError(f"Example {example.name!r}: {exc}") from exc
    _paste_centered(cell, image, 0, 0)
    _paste_centered(cell, heat, TILE + GAP, 0)
    cell[TILE:, :] = _CAPTION_BAR
    text_width = width - 12
    cv2.putText(
        cell,
        _fit_text(example.name, text_width),
        (6, TILE + 19),
        _FONT,
        _FONT_SCALE,
        _TEXT,
        1,
        cv2.LINE_AA,
    )
    colour = _GOOD_TEXT if example.label == "good" else _DEFECT_TEXT
    detail = _fit_text(f"{example.label}   score {example.score:.4g}", text_width)
    cv2.putText(cell, detail, (6, TILE + 40), _FONT, _FONT_SCALE, colour, 1, cv2.LINE_AA)
    return cell


def _grid(examples: Sequence[Example], low: float, high: float) -> np.ndarray:
    cells = [_cell(example, low, high) for example in examples]
    columns = min(GRID_COLUMNS, len(cells))
    rows = math.ceil(len(cells) / columns)
    cell_h, cell_w = cells[0].shape[:2]
    grid = np.full(
        (GAP + rows * (cell_h + GAP), GAP + columns * (cell_w + GAP), 3), 12, dtype=np.uint8
    )
    for index, cell in enumerate(cells):
        row, column = divmod(index, columns)
        top = GAP + row * (cell_h + GAP)
        left = GAP + column * (cell_w + GAP)
        grid[top : top + cell_h, left : left + cell_w] = cell
    return grid


def _write_image(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")


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
    heading: str, file_name: str, shown: Sequence[Example], total: int, which: str
) -> str:
    parts = [f"<h2>{html.escape(heading)}</h2>"]
    if not shown:
        parts.append('<p class="none">none</p>')
        return "\n".join(parts)
    if total > len(shown):
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
    sections: Sequence[tuple[str, str, Sequence[Example], int, str]],
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
