"""Property tests: the streaming means against numpy on arbitrary updates and weights."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedlearn.core.params import ParamSet
from fedlearn.strategies import coordinate_median, unweighted_mean, weighted_mean
from fedlearn.strategies.base import Reducer

values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def pooled_updates(draw: st.DrawFn) -> tuple[np.ndarray, list[float]]:
    """A (replies x values) array of updates and one weight per reply, at least one positive."""
    count = draw(st.integers(min_value=1, max_value=8))
    size = draw(st.integers(min_value=1, max_value=20))
    stack = draw(hnp.arrays(np.float64, (count, size), elements=values))
    weights = draw(st.lists(st.integers(0, 1000), min_size=count, max_size=count).filter(any))
    return stack, [float(w) for w in weights]


def reduce(reducer: Reducer, stack: np.ndarray, weights: list[float]) -> np.ndarray:
    acc = reducer.init(ParamSet({"w": np.zeros(stack.shape[1])}))
    for row, weight in zip(stack, weights, strict=True):
        acc = reducer.add(acc, ParamSet({"w": row}), weight)
    return reducer.result(acc)["w"]


def close(actual: np.ndarray, expected: np.ndarray, stack: np.ndarray) -> None:
    scale = max(float(np.abs(stack).max()), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12 * scale)


@given(pooled_updates())
def test_weighted_mean_equals_numpy_average_of_the_pooled_updates(case: tuple[np.ndarray, list[float]]) -> None:
    stack, weights = case

    result = reduce(weighted_mean(), stack, weights)

    close(result, np.average(stack, axis=0, weights=weights), stack)


@given(pooled_updates(), st.randoms(use_true_random=False))
def test_weighted_mean_does_not_depend_on_reply_order(case: tuple[np.ndarray, list[float]], random) -> None:
    stack, weights = case
    order = list(range(len(weights)))
    random.shuffle(order)

    shuffled = reduce(weighted_mean(), stack[order], [weights[i] for i in order])

    close(shuffled, reduce(weighted_mean(), stack, weights), stack)


@given(pooled_updates())
def test_unweighted_mean_equals_numpy_mean_of_the_pooled_updates(case: tuple[np.ndarray, list[float]]) -> None:
    stack, weights = case

    result = reduce(unweighted_mean(), stack, weights)

    close(result, stack.mean(axis=0), stack)


@given(pooled_updates())
def test_coordinate_median_equals_numpy_median_of_the_replies_with_weight(case: tuple[np.ndarray, list[float]]) -> None:
    stack, weights = case

    result = reduce(coordinate_median(), stack, weights)

    np.testing.assert_array_equal(result, np.median(stack[np.array(weights) > 0], axis=0))
