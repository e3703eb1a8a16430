"""Behaviour of each reducer beyond the shared conformance suite."""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError, QuorumError, ValidationError
from fedlearn.core.params import ParamSet
from fedlearn.strategies import coordinate_median, krum, trimmed_mean, unweighted_mean, weighted_mean
from fedlearn.strategies.base import Reducer


def reduce(reducer: Reducer, updates: list[np.ndarray], weights: list[float] | None = None) -> np.ndarray:
    """Reduce single-array updates named ``w`` and return the resulting array."""
    template = ParamSet({"w": np.zeros_like(updates[0])})
    acc = reducer.init(template)
    for update, weight in zip(updates, weights or [1.0] * len(updates), strict=True):
        acc = reducer.add(acc, ParamSet({"w": update}), weight)
    return reducer.result(acc)["w"]


def test_weighted_mean_weights_updates_by_example_count() -> None:
    updates = [np.array([1.0, 0.0]), np.array([4.0, 3.0])]

    result = reduce(weighted_mean(), updates, [1.0, 2.0])

    np.testing.assert_allclose(result, [3.0, 2.0])


def test_weighted_mean_zero_weight_is_ignored() -> None:
    updates = [np.array([2.0]), np.array([1e9])]

    result = reduce(weighted_mean(), updates, [5.0, 0.0])

    np.testing.assert_array_equal(result, [2.0])


def test_weighted_mean_all_zero_weights_raise_quorum_error() -> None:
    with pytest.raises(QuorumError, match=r"all 2 update\(s\) have weight 0"):
        reduce(weighted_mean(), [np.array([1.0]), np.array([2.0])], [0.0, 0.0])


def test_weighted_mean_without_updates_raises_quorum_error() -> None:
    reducer = weighted_mean()

    with pytest.raises(QuorumError, match="no updates"):
        reducer.result(reducer.init(ParamSet({"w": np.zeros(2)})))


def test_weighted_mean_rounds_integer_arrays() -> None:
    updates = [np.array([1, 10], dtype=np.int32), np.array([2, 20], dtype=np.int32)]

    result = reduce(weighted_mean(), updates, [1.0, 2.0])  # exact means 5/3 and 50/3

    assert result.dtype == np.int32
    np.testing.assert_array_equal(result, [2, 17])


def test_weighted_mean_accumulates_float32_updates_in_float64() -> None:
    rng = np.random.default_rng(0)
    scales = 10.0 ** rng.integers(-3, 4, size=300)
    updates = [(rng.standard_normal(1000) * scale).astype(np.float32) for scale in scales]
    weights = rng.integers(1, 1000, size=300).astype(float)

    result = reduce(weighted_mean(), updates, list(weights))

    exact = np.average(np.stack(updates).astype(np.float64), axis=0, weights=weights)
    np.testing.assert_array_equal(result, exact.astype(np.float32))


def test_weighted_mean_matches_numpy_on_arrays_larger_than_its_scratch_block() -> None:
    rng = np.random.default_rng(1)
    updates = [rng.standard_normal((300, 700)) for _ in range(3)]

    result = reduce(weighted_mean(), updates, [1.0, 3.0, 5.0])

    np.testing.assert_allclose(result, np.average(np.stack(updates), axis=0, weights=[1, 3, 5]), rtol=1e-12)


def test_weighted_mean_negative_weight_raises_validation_error() -> None:
    with pytest.raises(ValidationError, match=r"weight must be a finite number >= 0; got -1\.0"):
        reduce(weighted_mean(), [np.array([1.0])], [-1.0])


def test_weighted_mean_update_with_wrong_shape_raises_validation_error() -> None:
    reducer = weighted_mean()
    acc = reducer.init(ParamSet({"w": np.zeros(3)}))

    with pytest.raises(ValidationError, match=r"'w' has shape \(4,\); expected \(3,\)"):
        reducer.add(acc, ParamSet({"w": np.zeros(4)}), 1.0)


def test_weighted_mean_update_with_unknown_name_raises_validation_error() -> None:
    reducer = weighted_mean()
    acc = reducer.init(ParamSet({"w": np.zeros(3)}))

    with pytest.raises(ValidationError, match=r"missing \['w'\], unexpected \['v'\]"):
        reducer.add(acc, ParamSet({"v": np.zeros(3)}), 1.0)


def test_unweighted_mean_ignores_weights() -> None:
    result = reduce(unweighted_mean(), [np.array([1.0]), np.array([4.0])], [1.0, 100.0])

    np.testing.assert_array_equal(result, [2.5])


def test_unweighted_mean_counts_zero_weight_replies() -> None:
    result = reduce(unweighted_mean(), [np.array([3.0]), np.array([0.0])], [1.0, 0.0])

    np.testing.assert_array_equal(result, [1.5])


@pytest.mark.parametrize(
    ("reducer", "streaming"),
    [
        (weighted_mean(), True),
        (unweighted_mean(), True),
        (coordinate_median(), False),
        (trimmed_mean(0.1), False),
        (krum(1), False),
    ],
    ids=["weighted_mean", "unweighted_mean", "coordinate_median", "trimmed_mean", "krum"],
)
def test_reducer_declares_whether_it_streams(reducer: Reducer, streaming: bool) -> None:
    assert reducer.streaming is streaming


def test_coordinate_median_takes_each_coordinates_median() -> None:
    updates = [np.array([1.0, 9.0]), np.array([5.0, 2.0]), np.array([3.0, 4.0])]

    result = reduce(coordinate_median(), updates)

    np.testing.assert_array_equal(result, [3.0, 4.0])


def test_coordinate_median_of_an_even_count_averages_the_middle_pair() -> None:
    updates = [np.array([1.0]), np.array([2.0]), np.array([4.0]), np.array([100.0])]

    result = reduce(coordinate_median(), updates)

    np.testing.assert_array_equal(result, [3.0])


def test_coordinate_median_resists_a_minority_of_huge_updates() -> None:
    updates = [np.array([1.0]), np.array([1.1]), np.array([0.9]), np.array([1e12]), np.array([-1e12])]

    result = reduce(coordinate_median(), updates)

    np.testing.assert_array_equal(result, [1.0])


def test_coordinate_median_matches_numpy_across_column_blocks() -> None:
    rng = np.random.default_rng(2)
    updates = [rng.standard_normal(300_000).astype(np.float32) for _ in range(8)]  # 8 x 300k: three blocks

    result = reduce(coordinate_median(), updates)

    np.testing.assert_array_equal(result, np.median(np.stack(updates).astype(np.float64), axis=0).astype(np.float32))


def test_coordinate_median_ignores_weights_other_than_zero() -> None:
    updates = [np.array([1.0]), np.array([2.0]), np.array([30.0])]

    result = reduce(coordinate_median(), updates, [1.0, 1.0, 1000.0])

    np.testing.assert_array_equal(result, [2.0])


def test_trimmed_mean_drops_the_extremes_of_each_coordinate() -> None:
    updates = [np.array([v, -v]) for v in (1.0, 2.0, 3.0, 4.0, 100.0)]

    result = reduce(trimmed_mean(0.2), updates)  # floor(0.2 * 5) = 1 value cut at each end

    np.testing.assert_array_equal(result, [3.0, -3.0])


def test_trimmed_mean_with_beta_zero_is_the_plain_mean() -> None:
    updates = [np.array([1.0]), np.array([2.0]), np.array([6.0])]

    result = reduce(trimmed_mean(0.0), updates)

    np.testing.assert_array_equal(result, [3.0])


def test_trimmed_mean_without_updates_raises_quorum_error() -> None:
    reducer = trimmed_mean(0.1)

    with pytest.raises(QuorumError, match=r"trimmed_mean needs at least 1 update\(s\) of weight > 0; got 0"):
        reducer.result(reducer.init(ParamSet({"w": np.zeros(1)})))


def krum_updates(seed: int = 0) -> list[np.ndarray]:
    """Five honest updates near (1, 1) and one Byzantine update far away."""
    rng = np.random.default_rng(seed)
    honest = [np.array([1.0, 1.0]) + 0.01 * rng.standard_normal(2) for _ in range(5)]
    return [*honest[:2], np.array([50.0, -50.0]), *honest[2:]]


def test_krum_selects_an_honest_update() -> None:
    updates = krum_updates()

    result = reduce(krum(1), updates)

    assert any(np.array_equal(result, u) for i, u in enumerate(updates) if i != 2)


def test_krum_selects_the_update_closest_to_its_neighbours() -> None:
    updates = [np.array([0.0]), np.array([1.0]), np.array([2.0]), np.array([10.0]), np.array([11.0])]

    result = reduce(krum(1), updates)  # scores over the 2 nearest: 1+4=5, 1+1=2, 1+4=5, 1+64=65, 1+81=82

    np.testing.assert_array_equal(result, [1.0])


def test_multi_krum_averages_the_best_scored_updates() -> None:
    updates = [np.array([0.0]), np.array([1.0]), np.array([2.0]), np.array([10.0]), np.array([11.0])]

    result = reduce(krum(1, multi=3), updates)

    np.testing.assert_array_equal(result, [1.0])


def test_krum_with_a_model_spanning_several_blocks_excludes_the_byzantine_update() -> None:
    rng = np.random.default_rng(3)
    honest = [rng.standard_normal(400_000).astype(np.float32) * 0.01 for _ in range(6)]
    byzantine = np.full(400_000, 5.0, dtype=np.float32)

    result = reduce(krum(1, multi=6), [*honest[:3], byzantine, *honest[3:]])

    np.testing.assert_allclose(result, np.mean(np.stack(honest), axis=0), atol=1e-6)


def test_krum_with_too_few_updates_raises_quorum_error() -> None:
    updates = [np.array([1.0])] * 4

    with pytest.raises(QuorumError, match=r"krum\(num_byzantine=1, multi=1\) needs at least 5"):
        reduce(krum(1), updates)


def test_multi_krum_needs_multi_plus_num_byzantine_updates() -> None:
    updates = [np.array([float(i)]) for i in range(6)]

    with pytest.raises(QuorumError, match="needs at least 7 update"):
        reduce(krum(1, multi=6), updates)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: trimmed_mean(0.5), r"`beta` must be in \[0, 0.5\); got 0.5"),
        (lambda: trimmed_mean(-0.1), r"`beta` must be in \[0, 0.5\); got -0.1"),
        (lambda: trimmed_mean("0.1"), r"`beta` must be a number in \[0, 0.5\); got '0.1' \(str\)"),
        (lambda: krum(-1), "`num_byzantine` must be an integer >= 0; got -1"),
        (lambda: krum(1.5), r"`num_byzantine` must be an integer >= 0; got 1.5 \(float\)"),
        (lambda: krum(1, multi=0), "`multi` must be an integer >= 1; got 0"),
    ],
    ids=["beta_half", "beta_negative", "beta_string", "byzantine_negative", "byzantine_float", "multi_zero"],
)
def test_reducer_bad_hyper_parameter_raises_config_error_naming_it(build, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()
