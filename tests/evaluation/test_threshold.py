"""The good-only threshold rule and the F1-optimal one."""

import numpy as np
import pytest

from inspector.evaluation import f1_optimal, good_quantile_threshold


def test_margin_is_relative_to_the_spread_not_the_offset():
    rng = np.random.default_rng(0)
    spread = rng.normal(0, 0.1, 500)
    low = good_quantile_threshold(10 + spread)
    high = good_quantile_threshold(1000 + spread)
    # The same spread on a larger offset gives the same distance above the quantile.
    assert high.value - high.detail["quantile_score"] == pytest.approx(
        low.value - low.detail["quantile_score"])
    base, median = low.detail["quantile_score"], low.detail["median_score"]
    assert low.value == pytest.approx(base + 0.25 * (base - median))


@pytest.mark.parametrize("margin", [0.0, 0.25, 1.0])
def test_margin_moves_the_threshold_above_the_quantile(margin):
    scores = np.linspace(1.0, 2.0, 101)
    threshold = good_quantile_threshold(scores, quantile=0.99, margin=margin)
    assert threshold.value == pytest.approx(1.99 + margin * (1.99 - 1.5))
    assert threshold.detail["good_above_threshold"] == (2 if margin == 0 else 0)


def test_identical_good_scores_still_pass():
    threshold = good_quantile_threshold(np.full(50, 3.0))
    assert threshold.value > 3.0
    assert threshold.detail["good_above_threshold"] == 0


def test_few_good_images_carry_a_warning():
    assert "warning" in good_quantile_threshold(np.arange(5.0)).detail
    assert "warning" not in good_quantile_threshold(np.arange(40.0)).detail


def test_non_finite_scores_are_refused():
    with pytest.raises(ValueError):
        good_quantile_threshold(np.array([1.0, np.nan]))


def test_f1_optimal_separates_separable_scores():
    threshold = f1_optimal(np.array([1.0, 1.1, 1.2]), np.array([2.0, 2.5]))
    assert 1.2 < threshold.value <= 2.0
    assert threshold.detail["f1"] == 1.0
