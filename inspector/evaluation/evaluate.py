"""Evaluation on MVTec-AD-layout folders, and threshold calibration.

A category folder holds ``test/good``, ``test/<defect>`` and, where masks exist,
``ground_truth/<defect>/<stem>_mask.png``. Pixel metrics are computed at the
model's input size (maps and masks resized there) so memory stays bounded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from inspector.errors import ImageError
from inspector.evaluation.metrics import binary_report, pixel_auroc, pro_score, roc_auc
from inspector.evaluation.threshold import f1_optimal, good_quantile_threshold, score_scale
from inspector.imaging import IMAGE_SUFFIXES, list_images, read_image
from inspector.model import Detector, ModelCard, load_model, save_model

MAX_EXAMPLES = 12
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str  # "good" or the defect type
    mask_path: Path | None = None

    @property
    def defective(self) -> bool:
        return self.label != "good"


def load_category(root: str | Path) -> list[Sample]:
    """The test samples of an MVTec-AD-layout category folder, with masks where they exist."""
    root = Path(root)
    test = root / "test"
    if not (test / "good").is_dir():
        raise ImageError(f"{root}: not an MVTec-AD-layout folder (no test/good)")
    samples = []
    for folder in sorted(p for p in test.iterdir() if p.is_dir()):
        for path in list_images(folder):
            mask = root / "ground_truth" / folder.name / f"{path.stem}_mask.png"
            samples.append(Sample(path, folder.name, mask if mask.is_file() else None))
    if not any(s.defective for s in samples):
        raise ImageError(f"{root}: test/ holds no defect folders")
    return samples


def score_all(detector: Detector, paths: Sequence[Path], progress: bool = False,
              label: str = "scoring", keep_maps: bool = True,
              ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Scores, per-image milliseconds and maps (at the model's input size) for each path."""
    size = detector.card.input.size
    scores, millis, maps = [], [], []
    for path in tqdm(paths, desc=label, unit="img", disable=not progress, leave=False):
        frame = read_image(path)
        started = time.perf_counter()
        prediction = detector.predict(frame)
        millis.append((time.perf_counter() - started) * 1e3)
        scores.append(prediction.score)
        if keep_maps:  # calibration needs scores only
            maps.append(cv2.resize(prediction.anomaly_map, (size[1], size[0]),
                                   interpolation=cv2.INTER_AREA))
    return np.array(scores), np.array(millis), maps


def evaluate(
    model_dir: str | Path,
    data_dir: str | Path,
    report_dir: str | Path | None = None,
    threads: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Image AUROC, pixel AUROC and PRO (with masks), F1 and confusion at the card's threshold,
    median ms per image; optionally the visual report."""
    detector = Detector(load_model(model_dir), threads=threads, providers=("cpu",))
    detector.warm_up()
    samples = load_category(data_dir)
    scores, millis, maps = score_all(detector, [s.path for s in samples], progress, "eval")
    labels = np.array([s.defective for s in samples])
    threshold = detector.threshold
    at_threshold = binary_report(labels, scores, threshold)
    result: dict[str, Any] = {
        "model": detector.card.name,
        "model_sha256": detector.model.sha256,
        "data": str(data_dir),
        "images": len(samples),
        "defective": int(labels.sum()),
        "image_auroc": roc_auc(labels, scores),
        "pixel_auroc": None,
        "pro": None,
        "threshold": threshold,
        "threshold_method": detector.card.threshold.method,
        **{k: at_threshold[k] for k in ("f1", "precision", "recall", "tp", "fp", "tn", "fn")},
        "ms_per_image": float(np.median(millis)),
        "per_defect_auroc": {},
    }
    for defect in sorted({s.label for s in samples if s.defective}):
        keep = np.array([s.label in ("good", defect) for s in samples])
        result["per_defect_auroc"][defect] = roc_auc(labels[keep], scores[keep])
    if all(s.mask_path is not None for s in samples if s.defective):
        masks = np.stack([_mask(s, maps[0].shape) for s in samples])
        stacked = np.stack(maps)
        result["pixel_auroc"] = pixel_auroc(masks, stacked)
        result["pro"] = pro_score(masks, stacked)
    if report_dir is not None:
        _report(detector, samples, labels, scores, result, Path(report_dir))
    _remember(model_dir, result)
    return result


def _remember(model_dir: str | Path, result: dict[str, Any]) -> None:
    """Keep the headline figures in the card, per dataset, so the model carries its record."""
    card = load_model(model_dir).card
    headline = {k: result[k] for k in ("images", "image_auroc", "pixel_auroc", "pro", "f1",
                                      "threshold", "ms_per_image")}
    evaluations = {**card.metrics.get("evaluations", {}), Path(result["data"]).name: headline}
    try:
        save_model(model_dir, card.model_copy(update={
            "metrics": {**card.metrics, "evaluations": evaluations}}))
    except OSError as exc:  # a read-only model folder still gets evaluated
        logger.warning("could not record the evaluation in %s: %s", model_dir, exc)


def _mask(sample: Sample, shape: tuple[int, int]) -> np.ndarray:
    if sample.mask_path is None:
        return np.zeros(shape, bool)
    mask = cv2.imread(str(sample.mask_path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ImageError(f"{sample.mask_path}: not a decodable mask image")
    return cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 127


def _report(detector: Detector, samples: list[Sample], labels: np.ndarray, scores: np.ndarray,
            result: dict[str, Any], out: Path) -> Path:
    from inspector.evaluation.report import Example, write_report  # matplotlib only when asked

    threshold = detector.threshold
    false_rejects = [i for i in np.argsort(-scores) if not labels[i] and scores[i] >= threshold]
    escapes = [i for i in np.argsort(scores) if labels[i] and scores[i] < threshold]
    # With none wrong, the report shows the parts nearest to being wrong instead.
    closest_good = [] if false_rejects else [i for i in np.argsort(-scores) if not labels[i]]
    closest_defective = [] if escapes else [i for i in np.argsort(scores) if labels[i]]

    def examples(indices: list[int]) -> list[Example]:
        chosen = []
        for i in indices[:MAX_EXAMPLES]:
            frame = read_image(samples[i].path)
            prediction = detector.predict(frame)
            chosen.append(Example(samples[i].path.name, samples[i].label, float(scores[i]),
                                  frame, prediction.anomaly_map))
        return chosen

    scale = detector.card.score_scale
    return write_report(
        out, title=f"{detector.card.name} on {Path(result['data']).name}",
        labels=labels, scores=scores, threshold=threshold,
        metrics={k: v for k, v in result.items() if not isinstance(v, dict)},
        false_rejects=examples(false_rejects), escapes=examples(escapes),
        score_low=scale.low, score_high=scale.high,
        closest_good=examples(closest_good), closest_defective=examples(closest_defective),
    )


def defect_images(folder: str | Path) -> list[Path]:
    """Images in ``folder`` or, when it has none directly, in its sub-folders (one per type),
    except a ``good`` sub-folder, so an MVTec-AD ``test`` folder can be given as it is."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder")
    direct = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    if direct:
        return sorted(direct)
    found = [p for sub in sorted(folder.iterdir()) if sub.is_dir() and sub.name != "good"
             for p in list_images(sub)]
    if not found:
        raise ImageError(f"{folder}: no images, directly or in sub-folders")
    return found


def calibrate(
    model_dir: str | Path,
    good: Sequence[Path],
    defects: Sequence[Path] = (),
    quantile: float = 0.99,
    margin: float = 0.25,
    threads: int = 0,
    progress: bool = False,
) -> ModelCard:
    """Choose the threshold from scored samples and store it in the model's card.

    Good images only: ``quantile`` of their scores plus ``margin`` times their spread
    (that quantile minus the median). With labeled
    defects as well: the F1-optimal threshold.
    """
    model = load_model(model_dir)
    detector = Detector(model, threads=threads, providers=("cpu",))
    good_scores, _, _ = score_all(detector, good, progress, "good", keep_maps=False)
    if defects:
        defect_scores, _, _ = score_all(detector, defects, progress, "defects",
                                        keep_maps=False)
        threshold = f1_optimal(good_scores, defect_scores)
    else:
        threshold = good_quantile_threshold(good_scores, quantile, margin)
    card = model.card.model_copy(update={
        "threshold": threshold,
        "score_scale": score_scale(good_scores, threshold.value),
    })
    save_model(model_dir, card)
    return card
