"""Choosing the image score on synthetic defects: constructed cases where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.fitting.selection import (
    DEFAULT_TOP_FRACTION,
    TOP_FRACTIONS,
    choose_top_fraction,
    top_mean,
)

SIDE = 100  # 10,000 pixels: 0.1% is 10 pixels, 5% is 500


def _maps(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    return [rng.normal(1.0, 0.05, (SIDE, SIDE)) for _ in range(n)]


def test_tiny_sharp_defects_choose_a_small_share() -> None:
    # Defects of 10 very hot pixels: only the highest few pixels tell them apart;
    # a 5% mean dilutes them into the noise of 500 pixels.
    rng = np.random.default_rng(0)
    clean = _maps(rng, 20)
    defects = _maps(rng, 20)
    for m in defects:
        m.ravel()[rng.choice(m.size, 10, replace=False)] += rng.uniform(0.1, 0.4)
    selection = choose_top_fraction(clean, defects, ["blob"])
    assert selection.aurocs[0.001] > selection.aurocs[0.05]
    assert selection.chosen == 0.001


def test_wide_faint_defects_among_noise_spikes_choose_a_large_share() -> None:
    # Every map has 1.5% hot pixels of random height (noise): they fill the top 0.1% and
    # 1% whatever the part. Defects raise a wide area a little, which only a 5% mean sees.
    rng = np.random.default_rng(1)

    def spiky(n: int) -> list[np.ndarray]:
        maps = _maps(rng, n)
        for m in maps:
            m.ravel()[rng.choice(m.size, 150, replace=False)] += rng.uniform(0.3, 0.9, 150)
        return maps

    clean, defects = spiky(20), spiky(20)
    for m in defects:
        top, left = rng.integers(0, SIDE - 40, 2)
        m[top:top + 40, left:left + 40] += 0.1
    selection = choose_top_fraction(clean, defects, ["shift"])
    assert selection.aurocs[0.05] > max(selection.aurocs[0.001], selection.aurocs[0.01])
    assert selection.chosen == 0.05


def test_a_tie_keeps_the_default_and_the_record_says_what_was_weighed() -> None:
    rng = np.random.default_rng(2)
    clean = _maps(rng, 10)
    defects = [m + 5.0 for m in _maps(rng, 10)]  # every candidate separates them perfectly
    selection = choose_top_fraction(clean, defects, ["patch", "scratch"])
    assert set(selection.aurocs.values()) == {1.0}
    assert selection.chosen == DEFAULT_TOP_FRACTION
    record = selection.record()
    assert record["chosen"] == {"top_fraction": DEFAULT_TOP_FRACTION}
    assert [c["top_fraction"] for c in record["candidates"]] == list(TOP_FRACTIONS)
    assert (record["held_out_images"], record["synthetic_defects"]) == (10, 10)
    assert record["kinds"] == ["patch", "scratch"]


@pytest.mark.parametrize("fraction", [1e-6, 0.001, 0.013, 0.5, 1.0])
def test_top_mean_is_the_mean_of_the_highest_share(fraction: float) -> None:
    values = np.random.default_rng(3).random((37, 41))
    count = max(1, round(fraction * values.size))
    expected = np.sort(values.ravel())[::-1][:count].mean()
    assert top_mean(values, fraction) == pytest.approx(expected)


def test_choosing_needs_both_kinds_of_map() -> None:
    with pytest.raises(ValueError, match="clean and defective"):
        choose_top_fraction([], [np.zeros((4, 4))])
