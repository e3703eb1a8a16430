"""Bulyan and the geometric median, beyond the shared conformance suite."""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError, QuorumError
from fedlearn.core.params import ParamSet
from fedlearn.strategies import bulyan, geometric_median, weighted_mean

from .helpers import HONEST_MEAN, attacked_updates, reduce_arrays

ATTACKS = ["huge", "sign_flip"]


def reference_bulyan(updates: list[np.ndarray], f: int) -> np.ndarray:
    """Bulyan written out as El Mhamdi et al. state it, one loop per step, for comparison.

    Where Krum's neighbour count ``|remaining| - f - 2`` is not positive it uses 1, and it breaks
    equal scores (mutual nearest neighbours have them) by content, as the reducer does.
    """
    digests = [ParamSet({"w": u}).digest() for u in updates]
    remaining = list(range(len(updates)))
    selected: list[int] = []
    while len(selected) < len(updates) - 2 * f:
        neighbours = max(len(remaining) - f - 2, 1)
        scores = {
            i: sum(sorted(float(np.sum((updates[i] - updates[j]) ** 2)) for j in remaining if j != i)[:neighbours])
            for i in remaining
        }
        best = min(remaining, key=lambda i: (scores[i], digests[i]))
        remaining.remove(best)
        selected.append(best)
    chosen = np.stack([updates[i] for i in selected])
    median = np.median(chosen, axis=0)
    beta = len(updates) - 4 * f
    return np.array(
        [np.mean(sorted(chosen[:, c], key=lambda v: abs(v - median[c]))[:beta]) for c in range(chosen.shape[1])]
    )


# Bulyan -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("count", "f"), [(11, 2), (7, 1), (16, 3)])
def test_bulyan_matches_the_papers_algorithm_written_out(count: int, f: int) -> None:
    rng = np.random.default_rng(count)
    updates = [rng.standard_normal(6) * rng.uniform(0.5, 3) for _ in range(count)]

    result = reduce_arrays(bulyan(f), updates)

    np.testing.assert_allclose(result, reference_bulyan(updates, f), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("attack", ATTACKS)
def test_bulyan_stays_near_the_honest_mean_while_the_weighted_mean_does_not(attack: str) -> None:
    updates = attacked_updates(attack, honest=9, byzantine=2)  # n = 11 = 4f + 3

    robust = reduce_arrays(bulyan(2), updates)
    mean = reduce_arrays(weighted_mean(), updates)

    assert np.linalg.norm(robust - HONEST_MEAN) < 0.5
    assert np.linalg.norm(mean - HONEST_MEAN) > 5


def test_bulyan_with_too_few_replies_raises_quorum_error_naming_both_numbers() -> None:
    updates = [np.array([float(i)]) for i in range(20)]

    with pytest.raises(
        QuorumError,
        match=r"bulyan with num_byzantine=5 needs at least 23 replies of weight > 0 \(n >= 4f \+ 3\); got 20",
    ):
        reduce_arrays(bulyan(5), updates)


def test_bulyan_does_not_count_zero_weight_replies_towards_its_quorum() -> None:
    updates = [np.array([float(i)]) for i in range(7)]

    with pytest.raises(QuorumError, match=r"needs at least 7 replies of weight > 0 \(n >= 4f \+ 3\); got 6"):
        reduce_arrays(bulyan(1), updates, [1.0] * 6 + [0.0])


def test_bulyan_tolerating_no_byzantine_node_is_the_plain_mean() -> None:
    updates = [np.array([1.0, 5.0]), np.array([2.0, -1.0]), np.array([6.0, 2.0])]

    result = reduce_arrays(bulyan(0), updates, [1.0, 50.0, 1.0])

    np.testing.assert_allclose(result, [3.0, 2.0])


def test_bulyan_declares_it_needs_4f_plus_3_replies() -> None:
    assert bulyan(5).min_replies == 23


# Geometric median -------------------------------------------------------------------------------


def test_geometric_median_of_symmetric_points_is_their_centre() -> None:
    centre = np.array([3.0, -2.0])
    offsets = [np.array([1.0, 0.0]), np.array([-1.0, 0.0]), np.array([0.0, 2.0]), np.array([0.0, -2.0])]

    result = reduce_arrays(geometric_median(), [centre + o for o in offsets])

    np.testing.assert_allclose(result, centre, atol=1e-9)


def test_geometric_median_in_one_dimension_is_the_weighted_median() -> None:
    updates = [np.array([0.0]), np.array([1.0]), np.array([10.0])]

    result = reduce_arrays(geometric_median(), updates, [1.0, 1.0, 5.0])  # 10 holds 5 of the 7 units of weight

    np.testing.assert_allclose(result, [10.0], atol=1e-4)


def test_geometric_median_respects_weights() -> None:
    updates = [np.array([0.0, 0.0]), np.array([4.0, 0.0]), np.array([0.0, 4.0])]

    light = reduce_arrays(geometric_median(), updates, [1.0, 1.0, 1.0])
    heavy = reduce_arrays(geometric_median(), updates, [1.0, 1.0, 3.0])

    assert heavy[1] > light[1] + 1


@pytest.mark.parametrize("attack", ATTACKS)
def test_geometric_median_stays_near_the_honest_mean_while_the_weighted_mean_does_not(attack: str) -> None:
    updates = attacked_updates(attack, honest=8, byzantine=5)

    robust = reduce_arrays(geometric_median(), updates)
    mean = reduce_arrays(weighted_mean(), updates)

    assert np.linalg.norm(robust - HONEST_MEAN) < 0.5
    assert np.linalg.norm(mean - HONEST_MEAN) > 5


def test_geometric_median_stops_early_once_the_objective_settles() -> None:
    rng = np.random.default_rng(0)
    updates = [rng.standard_normal(5) for _ in range(9)]

    one = reduce_arrays(geometric_median(max_iterations=1), updates)
    loose = reduce_arrays(geometric_median(tolerance=0.5), updates)
    tight = reduce_arrays(geometric_median(tolerance=1e-12, max_iterations=1000), updates)

    np.testing.assert_array_equal(loose, one)  # the first iteration already improves by less than half
    assert not np.allclose(tight, one, atol=1e-6)


# Hyper-parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: bulyan(-1), "`num_byzantine` must be an integer >= 0; got -1"),
        (lambda: bulyan(2.0), r"`num_byzantine` must be an integer >= 0; got 2.0 \(float\)"),
        (lambda: geometric_median(nu=0), r"`nu` must be in \(0, inf\); got 0"),
        (lambda: geometric_median(max_iterations=0), "`max_iterations` must be an integer >= 1; got 0"),
        (lambda: geometric_median(tolerance=-1e-6), r"`tolerance` must be in \(0, inf\); got -1e-06"),
    ],
    ids=["byzantine_negative", "byzantine_float", "nu_zero", "iterations_zero", "tolerance_negative"],
)
def test_robust_reducer_bad_hyper_parameter_raises_config_error_naming_it(build, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()
