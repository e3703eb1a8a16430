"""The Gaussian mechanism on bounded statistics: tight sensitivities, shares that compose to z, dp-accounting's ε."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError
from fedlearn.privacy.accountant import Accountant, PoissonSampling
from fedlearn.privacy.statistics import (
    block_stddevs,
    calibrate_release,
    check_bounds,
    clip_rows,
    cross_sensitivity,
    pack_upper,
    project_psd,
    release_epsilon,
    sum_sensitivity,
    unpack_upper,
)

HALF = np.array([1.0, 3.0, 0.5])


def _packed_change(u: np.ndarray) -> float:
    return float(np.linalg.norm(pack_upper(np.outer(u, u))))


def test_cross_sensitivity_bounds_every_row_in_the_box() -> None:
    rows = np.random.default_rng(0).uniform(-HALF, HALF, size=(2000, 3))
    assert max(_packed_change(u) for u in rows) <= cross_sensitivity(HALF)


def test_cross_sensitivity_is_attained_at_a_corner() -> None:
    corners = [HALF * np.array(signs) for signs in itertools.product((-1, 1), repeat=3)]
    assert max(_packed_change(u) for u in corners) == pytest.approx(cross_sensitivity(HALF), rel=1e-12)


def test_sum_sensitivity_is_the_norm_of_the_half_widths() -> None:
    assert sum_sensitivity(HALF) == pytest.approx(math.sqrt(1 + 9 + 0.25))


def test_clip_rows_centres_on_the_box_and_stays_inside() -> None:
    low, high = np.array([0.0, -10.0]), np.array([10.0, 10.0])
    clipped = clip_rows(np.array([[1e12, -1e12], [5.0, 3.0]]), low, high)
    np.testing.assert_array_equal(clipped, [[5.0, -10.0], [0.0, 3.0]])


@pytest.mark.parametrize("low, high", [([0.0], [0.0]), ([1.0], [0.0]), ([np.nan], [1.0]), ([0.0], [np.inf])])
def test_check_bounds_empty_or_infinite_box_is_refused(low: list[float], high: list[float]) -> None:
    with pytest.raises(ConfigError, match="finite with low < high"):
        check_bounds(low, high)


def test_block_stddevs_shares_compose_to_one_release_of_multiplier_z() -> None:
    sensitivities = [1.0, 7.5, 120.0, 1.0]
    stddevs = block_stddevs(0.8, sensitivities)
    joint = math.sqrt(sum((d / s) ** 2 for d, s in zip(sensitivities, stddevs, strict=True)))
    assert joint == pytest.approx(1 / 0.8)


@pytest.mark.parametrize("z", [0.0, -1.0, math.nan, math.inf])
def test_block_stddevs_non_positive_multiplier_is_refused(z: float) -> None:
    with pytest.raises(ConfigError, match="noise_multiplier"):
        block_stddevs(z, [1.0])


def test_release_epsilon_is_the_accountants_single_gaussian() -> None:
    direct = Accountant(delta=1e-5).epsilon(noise_multiplier=2.0, sampling=PoissonSampling(rate=1.0), rounds=1)
    assert release_epsilon(2.0, 1e-5) == direct


def test_calibrate_release_spends_the_target() -> None:
    z = calibrate_release(1.0, 1e-5)
    assert release_epsilon(z, 1e-5) == pytest.approx(1.0, rel=1e-3)


def test_release_epsilon_large_delta_is_refused() -> None:
    with pytest.raises(ConfigError, match="delta"):
        release_epsilon(1.0, 0.5)


def test_pack_upper_round_trips_symmetric_matrices() -> None:
    a = np.random.default_rng(1).normal(size=(2, 4, 4))
    symmetric = a + np.swapaxes(a, -1, -2)
    np.testing.assert_array_equal(unpack_upper(pack_upper(symmetric), 4), symmetric)


def test_project_psd_makes_an_indefinite_matrix_semidefinite() -> None:
    projected = project_psd(np.array([[1.0, 2.0], [2.0, 1.0]]))
    assert np.linalg.eigvalsh(projected).min() >= -1e-12
    np.testing.assert_allclose(projected, [[1.5, 1.5], [1.5, 1.5]])


def test_project_psd_leaves_a_semidefinite_matrix_unchanged() -> None:
    a = np.random.default_rng(2).normal(size=(5, 3))
    np.testing.assert_allclose(project_psd(a.T @ a), a.T @ a, rtol=1e-12, atol=1e-12)
