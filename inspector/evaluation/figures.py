"""The evaluation report's pictures: ROC and score charts, and grids of the worst examples.

Charts are drawn with matplotlib's object API on an Agg canvas (no pyplot, no global
backend state); example grids with OpenCV, each example as the image beside its heat overlay.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from inspector.imaging import as_bgr, heatmap_overlay

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



def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {tuple(value.shape)}"
    return type(value).__name__



# --- charts -----------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself; no pyplot, no global backend state
    return figure


def _save(figure: Figure, path: Path) -> None:
    figure.savefig(path, dpi=DPI, facecolor="white")
    figure.clear()


def plot_roc(
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


def plot_histogram(path: Path, labels: np.ndarray, scores: np.ndarray, threshold: float) -> None:
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


def grid(examples: Sequence[Example], low: float, high: float) -> np.ndarray:
    cells = [_cell(example, low, high) for example in examples]
    columns = min(GRID_COLUMNS, len(cells))
    rows = math.ceil(len(cells) / columns)
    cell_h, cell_w = cells[0].shape[:2]
    canvas = np.full(
        (GAP + rows * (cell_h + GAP), GAP + columns * (cell_w + GAP), 3), 12, dtype=np.uint8
    )
    for index, cell in enumerate(cells):
        row, column = divmod(index, columns)
        top = GAP + row * (cell_h + GAP)
        left = GAP + column * (cell_w + GAP)
        canvas[top : top + cell_h, left : left + cell_w] = cell
    return canvas


def write_image(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")
