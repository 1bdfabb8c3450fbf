"""Judging and calibrating a model on labeled images.

- ``metrics``: image AUROC, pixel AUROC, PRO, F1 and the confusion at a threshold
- ``threshold``: the rules that choose a decision threshold (good-only quantile, F1-optimal)
- ``evaluate``: ``inspector eval`` and ``inspector calibrate`` over MVTec-layout folders
- ``report``: the HTML evaluation report a QA engineer opens after ``inspector eval --report``
- ``figures``: its charts (ROC, score histogram; matplotlib) and grids of the worst examples
"""

from inspector.evaluation.evaluate import calibrate, defect_images, evaluate, load_category
from inspector.evaluation.metrics import (
    binary_report,
    f1_optimal_threshold,
    pixel_auroc,
    pro_score,
    roc_auc,
)
from inspector.evaluation.threshold import (
    f1_optimal,
    good_quantile_threshold,
    score_scale,
    threshold_effects,
)

__all__ = ["binary_report", "calibrate", "defect_images", "evaluate", "f1_optimal",
           "f1_optimal_threshold", "good_quantile_threshold", "load_category", "pixel_auroc",
           "pro_score", "roc_auc", "score_scale", "threshold_effects"]
