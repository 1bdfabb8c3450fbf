"""The HTML evaluation report: the ROC helper, the page, its charts and example grids."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.evaluation.report import (
    ESCAPES_HEADING,
    FALSE_REJECTS_HEADING,
    Example,
    _auc,
    _roc,
    write_report,
)
from tests.conftest import random_image

HOSTILE = "<script>alert(1)</script>"


# --- ROC helper -------------------------------------------------------------------------------


def test_roc_collapses_ties_and_computes_auc() -> None:
    labels = np.array([True, True, False, False])
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    fpr, tpr, thresholds = _roc(labels, scores)
    np.testing.assert_allclose(fpr, [0.0, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(thresholds[1:], [0.9, 0.5, 0.1])
    assert _auc(fpr, tpr) == pytest.approx(0.875)  # tie counted as half
    perfect = _roc(np.array([False, True]), np.array([0.0, 1.0]))
    assert _auc(perfect[0], perfect[1]) == pytest.approx(1.0)


# --- write_report -----------------------------------------------------------------------------


def synthetic_set(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    labels = np.array([False] * 10 + [True] * 10)
    scores = np.r_[rng.normal(0.3, 0.1, 10), rng.normal(0.7, 0.15, 10)]
    threshold = 0.5
    examples = []
    for index, (label, score) in enumerate(zip(labels, scores, strict=True)):
        amap = rng.random((16, 16)).astype(np.float32) * score
        name = HOSTILE if index == 0 else f"part_{index:03d}.png"
        examples.append(
            Example(
                name=name,
                label="scratch" if label else "good",
                score=float(score),
                image=random_image(rng),
                anomaly_map=amap,
            )
        )
    false_rejects = [e for e, lab in zip(examples, labels, strict=True) if not lab]
    escapes = [e for e, lab in zip(examples, labels, strict=True) if lab][:3]
    return {
        "labels": labels,
        "scores": scores,
        "threshold": threshold,
        "false_rejects": false_rejects,
        "escapes": escapes,
    }


METRICS = {
    "auroc": 0.912345,
    "f1": 0.8,
    "precision": None,
    "tp": 8,
    "fp": 1,
    "tn": 9,
    "fn": 2,
    HOSTILE: 1.5,
}


def test_write_report_writes_page_charts_and_grids(tmp_path: Path) -> None:
    data = synthetic_set()
    out_dir = tmp_path / "report" / "nested"
    index = write_report(
        out_dir,
        title=f"Eval {HOSTILE}",
        metrics=METRICS,
        score_low=0.2,
        score_high=0.9,
        **data,
    )
    assert index == out_dir / "index.html"
    for name in ("roc.png", "histogram.png", "false_rejects.png", "escapes.png"):
        image = cv2.imread(str(out_dir / name))
        assert image is not None, name
        assert image.shape[0] >= 100 and image.shape[1] >= 100, name
        assert image.std() > 5, name  # not a blank canvas

    page = index.read_text(encoding="utf-8")
    for text in (FALSE_REJECTS_HEADING, ESCAPES_HEADING, "0.9123", "0.8", "n/a", "1.5"):
        assert text in page, text
    for name in ("roc.png", "histogram.png", "false_rejects.png", "escapes.png"):
        assert f'src="{name}"' in page
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("&lt;script&gt;") >= 3  # title, metric key, example name
    assert ">8<" in page or "TP 8" in page


def test_write_report_with_no_false_rejects_says_none(tmp_path: Path) -> None:
    data = synthetic_set(1)
    data["false_rejects"] = []
    index = write_report(tmp_path, title="t", metrics={}, score_low=0.0, score_high=1.0, **data)
    page = index.read_text(encoding="utf-8")
    assert not (tmp_path / "false_rejects.png").exists()
    assert (tmp_path / "escapes.png").exists()
    section = page.split(FALSE_REJECTS_HEADING, 1)[1].split("<h2>", 1)[0]
    assert ">none<" in section
    assert "false_rejects.png" not in page


def test_a_report_with_none_wrong_shows_the_parts_closest_to_the_threshold(
        tmp_path: Path) -> None:
    data = synthetic_set(2)
    good = data.pop("false_rejects")
    near = sorted(good, key=lambda e: e.score, reverse=True)
    index = write_report(tmp_path, title="t", metrics={}, score_low=0.0, score_high=1.0,
                         false_rejects=[], closest_good=good, **data)
    page = index.read_text(encoding="utf-8")
    section = page.split(FALSE_REJECTS_HEADING, 1)[1].split("<h2>", 1)[0]
    assert ">none<" in section and "Closest to the threshold" in section
    assert 'src="closest_good.png"' in section
    assert cv2.imread(str(tmp_path / "closest_good.png")) is not None
    # highest-scoring good part first
    assert section.index(f"{near[0].score:.4g}") < section.index(f"{near[1].score:.4g}")
    # Escapes exist, so the closest defective parts are not shown.
    assert not (tmp_path / "closest_defective.png").exists()


def test_write_report_handles_a_single_class(tmp_path: Path) -> None:
    index = write_report(
        tmp_path,
        title="all good",
        labels=np.zeros(5, dtype=bool),
        scores=np.linspace(0.0, 1.0, 5),
        threshold=0.5,
        metrics={"auroc": float("nan")},
        false_rejects=[],
        escapes=[],
        score_low=0.0,
        score_high=1.0,
    )
    assert cv2.imread(str(tmp_path / "roc.png")) is not None
    assert "n/a" in index.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        (np.array([True, False]), np.array([0.1, 0.2, 0.3]), "same length"),
        (np.array([], dtype=bool), np.array([]), "must not be empty"),
        (np.array([0, 2]), np.array([0.1, 0.2]), "0/1"),
        (np.array([True, False]), np.array([0.1, np.nan]), "finite"),
    ],
)
def test_write_report_rejects_bad_inputs(
    tmp_path: Path, labels: np.ndarray, scores: np.ndarray, expected: str
) -> None:
    with pytest.raises(ValueError, match=expected):
        write_report(
            tmp_path,
            title="t",
            labels=labels,
            scores=scores,
            threshold=0.5,
            metrics={},
            false_rejects=[],
            escapes=[],
            score_low=0.0,
            score_high=1.0,
        )


def test_example_rejects_a_bad_image() -> None:
    with pytest.raises(ValueError, match=r"uint8 \(H, W, 3\)"):
        Example("x", "good", 0.1, np.zeros((4, 4, 3), dtype=np.float32), np.zeros((4, 4)))
