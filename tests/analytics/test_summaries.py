"""Summaries are a monoid, merge exactly, invert where they can and survive the wire."""

from __future__ import annotations

import functools
import math
import operator

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedlearn.analytics import (
    ClassMoments,
    Histogram,
    HistogramSpec,
    Moments,
    Summary,
    SummarySpec,
    accumulate,
    merge_all,
    summarize,
)
from fedlearn.core import ConfigError, ParamSet, ValidationError, decode, encode
from tests.analytics.conftest import assert_close, merge_randomly, node_summaries, spec_for

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
blocks = st.integers(min_value=0, max_value=12).flatmap(lambda n: arrays(np.float64, (n, 3), elements=finite))


def _close(a: Moments, b: Moments) -> None:
    assert int(a.count) == int(b.count)
    scale = max(1.0, float(np.max(np.abs(b.comoment), initial=0.0)))
    np.testing.assert_allclose(
        a.mean, b.mean, rtol=1e-9, atol=1e-9 * max(1.0, float(np.max(np.abs(b.mean), initial=0)))
    )
    np.testing.assert_allclose(a.comoment, b.comoment, rtol=1e-7, atol=1e-9 * scale)
    np.testing.assert_array_equal(a.min, b.min)
    np.testing.assert_array_equal(a.max, b.max)


@settings(max_examples=60, deadline=None)
@given(blocks, blocks, blocks)
def test_moments_merge_is_associative(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    ma, mb, mc = Moments.of(a), Moments.of(b), Moments.of(c)
    _close(ma.merge(mb).merge(mc), ma.merge(mb.merge(mc)))


@settings(max_examples=60, deadline=None)
@given(blocks, blocks)
@example(np.zeros((1, 3)), -np.zeros((1, 3)))  # np.minimum(0.0, -0.0) returns whichever comes first
def test_moments_merge_is_commutative_bit_for_bit(a: np.ndarray, b: np.ndarray) -> None:
    ab, ba = Moments.of(a).merge(Moments.of(b)), Moments.of(b).merge(Moments.of(a))
    assert ab.to_params().bitwise_equal(ba.to_params())


@settings(max_examples=60, deadline=None)
@given(blocks)
def test_empty_moments_is_the_identity_bit_for_bit(a: np.ndarray) -> None:
    m = Moments.of(a)
    assert m.merge(Moments.empty(3)).to_params().bitwise_equal(m.to_params())
    assert Moments.empty(3).merge(m).to_params().bitwise_equal(m.to_params())


@settings(max_examples=60, deadline=None)
@given(blocks, blocks)
def test_merged_moments_equal_the_moments_of_the_pooled_rows(a: np.ndarray, b: np.ndarray) -> None:
    _close(Moments.of(a).merge(Moments.of(b)), Moments.of(np.vstack([a, b])))


@settings(max_examples=60, deadline=None)
@given(blocks, blocks)
def test_subtract_undoes_merge_for_counts_means_and_comoments(a: np.ndarray, b: np.ndarray) -> None:
    ma, mb = Moments.of(a), Moments.of(b)
    back = ma.merge(mb).subtract(mb)
    expected = ma
    assert int(back.count) == int(expected.count)
    scale = max(1.0, float(np.max(np.abs(ma.merge(mb).comoment), initial=0.0)))
    np.testing.assert_allclose(back.mean, expected.mean, atol=1e-6 * max(1.0, float(np.abs(a).max(initial=0))))
    np.testing.assert_allclose(back.comoment, expected.comoment, atol=1e-8 * scale)


def test_moments_of_data_with_mean_1e8_keep_the_variance_to_1e_minus_10() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(loc=1e8, scale=1.0, size=(200_000, 3))
    parts = np.array_split(x, np.sort(rng.choice(len(x), size=49, replace=False)))
    merged = merge_all([Moments.of(p) for p in parts])
    exact_mean = np.array([math.fsum(x[:, j]) / len(x) for j in range(3)])
    centred = x - exact_mean
    assert_close(merged.mean, exact_mean, rtol=1e-15)
    assert_close(merged.covariance(), centred.T @ centred / (len(x) - 1), rtol=1e-10)


def test_raw_sums_of_squares_would_lose_that_variance_entirely() -> None:
    """Why the moments are centred: the textbook formula has no correct digit left here."""
    x = np.random.default_rng(1).normal(loc=1e8, scale=1.0, size=10_000)
    naive = (np.sum(x * x) - np.sum(x) ** 2 / len(x)) / (len(x) - 1)
    stable = float(Moments.of(x[:, None]).variance()[0])
    assert abs(stable - np.var(x, ddof=1)) < 1e-9
    assert abs(naive - np.var(x, ddof=1)) > 1e-2


def test_subtract_keeps_an_extreme_that_no_removed_row_attained() -> None:
    kept, removed = np.array([[0.0], [10.0]]), np.array([[5.0]])
    after = Moments.of(np.vstack([kept, removed])).subtract(Moments.of(removed))
    assert (after.min[0], after.max[0]) == (0.0, 10.0)


def test_subtract_marks_an_extreme_held_by_a_removed_row_unknown() -> None:
    kept, removed = np.array([[1.0], [2.0]]), np.array([[9.0]])
    after = Moments.of(np.vstack([kept, removed])).subtract(Moments.of(removed))
    assert after.min[0] == 1.0
    assert np.isnan(after.max[0])
    assert np.isnan(after.merge(Moments.of(np.array([[0.0]]))).max[0])  # unknown is never reported as exact


def test_subtract_more_rows_than_were_added_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot remove 3 rows from a summary of 2"):
        Moments.of(np.ones((2, 1))).subtract(Moments.of(np.ones((3, 1))))


def test_additive_form_summed_across_nodes_equals_the_merge() -> None:
    """The secure-aggregation seam: nodes send plain sums that add; the coordinator recovers moments."""
    x = np.random.default_rng(2).normal(loc=1e6, scale=3.0, size=(3000, 4))
    parts = np.array_split(x, [100, 1500, 1600])
    shift = np.full(4, 1e6)  # a public reference near the mean
    total = functools.reduce(operator.add, [Moments.of(p).to_additive(shift) for p in parts])
    recovered = Moments.from_additive(total, shift)
    expected = Moments.of(x)
    assert_close(recovered.mean, expected.mean, rtol=1e-14)
    assert_close(recovered.comoment, expected.comoment, rtol=1e-10)


def test_class_moments_merge_takes_the_union_of_classes() -> None:
    a = ClassMoments.of(np.array([[1.0], [2.0], [3.0]]), np.array([0, 0, 2]))
    b = ClassMoments.of(np.array([[4.0], [5.0]]), np.array([1, 2]))
    merged = a.merge(b)
    assert merged.classes.tolist() == [0, 1, 2]
    assert merged.counts.tolist() == [2, 1, 2]
    assert merged.moments.mean[:, 0].tolist() == [1.5, 4.0, 4.0]


def test_class_moments_subtract_drops_classes_left_empty() -> None:
    a = ClassMoments.of(np.array([[1.0], [2.0], [3.0]]), np.array([0, 0, 2]))
    left = a.subtract(ClassMoments.of(np.array([[3.0]]), np.array([2])))
    assert left.classes.tolist() == [0]


def test_class_labels_must_be_integer_codes() -> None:
    with pytest.raises(ConfigError, match="integer class codes"):
        ClassMoments.of(np.ones((2, 1)), np.array([0.0, 0.5]))


def test_histograms_merge_to_the_histogram_of_the_pooled_values() -> None:
    values = np.random.default_rng(3).normal(size=1000)
    spec = HistogramSpec(column="v", low=-2.0, high=2.0, bins=8)
    merged = merge_all([Histogram.of(p, spec) for p in np.array_split(values, [10, 400, 990])])
    np.testing.assert_array_equal(merged.in_range, np.histogram(values, bins=8, range=(-2, 2))[0])
    assert merged.counts.sum() == 1000  # under- and overflow keep every row accounted for


def test_histograms_with_different_bins_refuse_to_merge() -> None:
    a = Histogram.empty(HistogramSpec(column="v", low=0, high=1, bins=4))
    b = Histogram.empty(HistogramSpec(column="v", low=0, high=2, bins=4))
    with pytest.raises(ConfigError, match="different bin edges"):
        a.merge(b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bins": 0}, r"^histogram of 'v': `bins` must be an integer >= 1; got 0$"),
        ({"bins": 2.5}, r"^histogram of 'v': `bins` must be an integer >= 1; got 2.5 \(float\)$"),
        ({"low": math.inf}, r"^histogram of 'v': `low` must be in \(-inf, inf\); got inf$"),
        ({"low": 1.0}, r"^histogram of 'v': range must have low < high; got \[1.0, 1.0\]$"),
    ],
    ids=["bins_zero", "bins_float", "low_infinite", "empty_range"],
)
def test_bad_histogram_spec_names_the_histogram_and_the_parameter(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HistogramSpec(**{"column": "v", "low": 0.0, "high": 1.0, "bins": 4, **kwargs})  # type: ignore[arg-type]


def test_histogram_spec_of_numpy_numbers_survives_json() -> None:
    histogram = HistogramSpec(column="v", low=np.int64(0), high=1, bins=np.int64(3))  # type: ignore[arg-type]
    spec = SummarySpec(columns=("v",), histograms=(histogram,))

    assert SummarySpec.from_json(spec.to_json()) == spec


def test_summary_with_unexpected_parameters_names_them() -> None:
    spec = spec_for(2)
    params = Summary.empty(spec).to_params().merged(ParamSet({"extra": np.zeros(1)}))
    with pytest.raises(ValidationError, match=r"^summary parameters: unexpected \['extra'\]$"):
        Summary.from_params(params, spec)


def test_summary_survives_the_safetensors_codec() -> None:
    spec = SummarySpec(
        columns=("a", "b"), target="y", by_class=True, histograms=(HistogramSpec(column="a", low=0, high=1, bins=3),)
    )
    rows = np.column_stack([np.random.default_rng(4).random((50, 2)), np.arange(50) % 3])
    summary = summarize(rows, spec, min_rows=0)
    back = Summary.from_params(decode(encode(summary.to_params())), spec)
    assert back.to_params().bitwise_equal(summary.to_params())


def test_summary_with_missing_parameters_is_rejected() -> None:
    spec = spec_for(2)
    params = Summary.empty(spec).to_params()
    broken = type(params)({k: v for k, v in params.items() if k != "moments/comoment"})
    with pytest.raises(ValidationError, match="missing"):
        Summary.from_params(broken, spec)


def test_summaries_of_different_specs_refuse_to_merge() -> None:
    with pytest.raises(ConfigError, match="different specs"):
        Summary.empty(spec_for(2)).merge(Summary.empty(spec_for(3)))


def test_any_split_merged_in_any_order_gives_the_pooled_summary() -> None:
    x = np.random.default_rng(5).normal(size=(500, 3))
    pooled = accumulate(x, spec_for(3, target=False))
    for seed, nodes in enumerate((2, 9, 50)):
        merged = merge_randomly(node_summaries(x, None, spec_for(3, target=False), nodes, seed), seed)
        assert merged.count == pooled.count
        assert_close(merged.moments.comoment, pooled.moments.comoment, rtol=1e-12)


def test_summarising_in_chunks_equals_summarising_at_once() -> None:
    x = np.random.default_rng(6).normal(size=(1000, 2))
    spec = spec_for(2, target=False)
    chunked = accumulate(x, spec, chunk_rows=7)
    whole = accumulate([x], spec)
    assert_close(chunked.moments.comoment, whole.moments.comoment, rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"columns": ()}, "at least one feature"),
        ({"columns": "abc"}, "not one string"),
        ({"columns": ("a", "a")}, "unique"),
        ({"columns": ("a",), "target": "a"}, "unique"),
        ({"columns": ("a",), "by_class": True}, "needs a `target`"),
        ({"columns": ("a,b",)}, "without commas"),
    ],
)
def test_bad_specs_are_config_errors_that_say_why(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SummarySpec(**kwargs)  # type: ignore[arg-type]


def test_non_finite_values_are_refused_with_the_column_name() -> None:
    rows = np.array([[1.0, 2.0], [np.nan, 1.0]])
    with pytest.raises(ConfigError, match="column 'x0' holds NaN"):
        accumulate(rows, spec_for(1))


def test_chunks_of_the_wrong_width_are_refused() -> None:
    with pytest.raises(ConfigError, match="2 columns"):
        accumulate(np.ones((3, 3)), spec_for(1))


def test_count_sum_sum_of_squares_and_cross_products_match_numpy() -> None:
    x = np.random.default_rng(7).normal(loc=3.0, size=(400, 3))
    parts = np.array_split(x, [13, 200])
    m = merge_all([Moments.of(p) for p in parts])
    assert int(m.count) == 400
    assert_close(m.sum, x.sum(axis=0), rtol=1e-12)
    assert_close(m.sum_of_squares, (x**2).sum(axis=0), rtol=1e-12)
    assert_close(m.cross_product(), x.T @ x, rtol=1e-12)  # XᵀX, and Xᵀy when y is a column


def test_per_class_moments_add_up_to_the_moments_of_all_rows() -> None:
    x = np.random.default_rng(8).normal(size=(300, 2))
    labels = np.arange(300) % 4
    spec = SummarySpec(columns=("a", "b"), target="y", by_class=True)
    summary = merge_all(
        [summarize(np.column_stack([x, labels])[p], spec, min_rows=0) for p in (slice(0, 90), slice(90, None))]
    )
    assert summary.by_class is not None
    total = summary.by_class.total()
    assert_close(total.mean, summary.features.mean, rtol=1e-12)
    assert_close(total.comoment, summary.features.comoment, rtol=1e-12)
