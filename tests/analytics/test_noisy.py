"""A node's noisy release: noise of the calibrated size, rows clipped into the bounds, exact algebra when merged."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedlearn.analytics.histogram import HistogramSpec
from fedlearn.analytics.noisy import NoisyStatistics, noisy_release
from fedlearn.analytics.scan import accumulate
from fedlearn.analytics.summary import SummarySpec
from fedlearn.core.params import ParamSet
from fedlearn.privacy.noise import SeededNoise
from fedlearn.privacy.statistics import cross_sensitivity, sum_sensitivity

SPEC = SummarySpec(columns=("a", "b"), target="y")
LOW, HIGH = np.array([0.0, -5.0, 0.0]), np.array([10.0, 5.0, 1.0])
ROWS = np.array([[1.0, 2.0, 0.0], [9.0, -4.0, 1.0], [5.0, 0.0, 1.0]])


def _release(
    rows: np.ndarray,
    seed: int,
    z: float = 1.0,
    *,
    spec: SummarySpec = SPEC,
    classes: tuple[int, ...] = (),
    low: np.ndarray = LOW,
    high: np.ndarray = HIGH,
    histograms_only: bool = False,
) -> dict[str, np.ndarray]:
    params = noisy_release(
        [rows], spec, classes=classes, low=low, high=high, noise_multiplier=z,
        source=SeededNoise(np.random.default_rng(seed)), histograms_only=histograms_only,
    )  # fmt: skip
    return dict(params.items())


def _read(values: dict[str, np.ndarray]) -> NoisyStatistics:
    return NoisyStatistics.from_params(ParamSet({**values, "epsilon": np.asarray(1.0)}), SPEC, ())


def test_noisy_release_noise_std_matches_calibrated_sigma_times_sensitivity() -> None:
    exact = _release(ROWS, 0, z=1e-12)
    draws = np.array([_release(ROWS, seed, z=0.7)["sum"] - exact["sum"] for seed in range(3000)])
    counts = np.array([float(_release(ROWS, seed, z=0.7)["count"]) for seed in range(1000)])
    half = (HIGH - LOW) / 2
    blocks = 3  # count, sums, cross products
    np.testing.assert_allclose(draws.std(axis=0), 0.7 * math.sqrt(blocks) * sum_sensitivity(half), rtol=0.05)
    assert counts.std() == pytest.approx(0.7 * math.sqrt(blocks), rel=0.08)
    assert draws.mean(axis=0) == pytest.approx(np.zeros(3), abs=0.2)


def test_noisy_release_cross_noise_matches_its_sensitivity() -> None:
    exact = _release(ROWS, 0, z=1e-12)["cross"]
    draws = np.array([_release(ROWS, seed, z=0.5)["cross"] - exact for seed in range(2000)])
    expected = 0.5 * math.sqrt(3) * cross_sensitivity((HIGH - LOW) / 2)
    np.testing.assert_allclose(draws.std(axis=0), expected, rtol=0.07)


def test_noisy_release_huge_row_moves_the_sums_by_at_most_the_bounds() -> None:
    outlier = np.array([[1e12, -1e12, 1e12]])
    without = _release(ROWS, 7)
    with_outlier = _release(np.vstack([ROWS, outlier]), 7)  # same seed: the same noise
    moved = with_outlier["sum"] - without["sum"]
    assert np.linalg.norm(moved) <= sum_sensitivity((HIGH - LOW) / 2) + 1e-9
    assert float(with_outlier["count"] - without["count"]) == pytest.approx(1.0)


def test_noisy_release_is_reproducible_with_the_same_seed() -> None:
    first, second = _release(ROWS, 3), _release(ROWS, 3)
    for name, value in first.items():
        np.testing.assert_array_equal(value, second[name])


def test_noisy_release_histograms_only_releases_cells_alone() -> None:
    spec = SummarySpec(columns=("a",), histograms=(HistogramSpec(column="a", low=0, high=10, bins=5),))
    params = _release(ROWS[:, :1], 1, spec=spec, low=LOW[:1], high=HIGH[:1], histograms_only=True)
    assert set(params) == {"centre", "low", "high", "hist/0/counts"}


def test_noisy_statistics_merge_across_centres_is_exact_without_noise() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.uniform(0, 1, size=(30, 3)), rng.uniform(0, 1, size=(50, 3))
    wide_low, wide_high = np.array([-2.0, -1.0, -3.0]), np.array([4.0, 2.0, 1.0])
    first = _read(_release(a, 0, z=1e-12, low=LOW * 0, high=HIGH))
    second = _read(_release(b, 1, z=1e-12, low=wide_low, high=wide_high))
    summary = first.merge(second).to_summary()
    exact = accumulate(np.vstack([a, b]), SPEC)
    assert summary.count == 80
    np.testing.assert_allclose(summary.moments.mean, exact.moments.mean, atol=1e-9)
    np.testing.assert_allclose(summary.moments.comoment, exact.moments.comoment, atol=1e-8)


def test_noisy_statistics_classes_rows_of_undeclared_classes_count_in_none() -> None:
    spec = SummarySpec(columns=("a", "b"), target="y", by_class=True)
    rows = np.array([[1.0, 2.0, 0.0], [9.0, -4.0, 1.0], [5.0, 0.0, 1.0], [5.0, 0.0, 0.5]])
    params = _release(rows, 0, z=1e-12, spec=spec, classes=(0, 1))
    np.testing.assert_allclose(params["class/count"], [1.0, 2.0], atol=1e-9)
