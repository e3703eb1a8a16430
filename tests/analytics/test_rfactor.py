"""R factors are a monoid whose RᵀR is the co-moment, survive the wire and refuse malformed input."""

from __future__ import annotations

import math
import re
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedlearn.analytics import Moments, RFactor, Summary, merge_all, summarize
from fedlearn.core import ParamSet, ValidationError, decode, encode
from tests.analytics.conftest import spec_for

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
blocks = st.integers(min_value=0, max_value=12).flatmap(lambda n: arrays(np.float64, (n, 3), elements=finite))


def _gram_close(factor: RFactor, comoment: np.ndarray) -> None:
    scale = max(1.0, float(np.max(np.abs(comoment), initial=0.0)))
    np.testing.assert_allclose(factor.r.T @ factor.r, comoment, rtol=0, atol=1e-10 * scale)


@settings(max_examples=60, deadline=None)
@given(blocks, blocks)
def test_merged_factor_squares_to_the_comoment_of_the_pooled_rows(a: np.ndarray, b: np.ndarray) -> None:
    merged = RFactor.of(a).merge(RFactor.of(b))
    pooled = Moments.of(np.vstack([a, b]))
    assert int(merged.count) == int(pooled.count)
    _gram_close(merged, pooled.comoment)


@settings(max_examples=60, deadline=None)
@given(blocks, blocks, blocks)
def test_factor_merge_is_associative_to_rounding(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    fa, fb, fc = RFactor.of(a), RFactor.of(b), RFactor.of(c)
    left, right = fa.merge(fb).merge(fc), fa.merge(fb.merge(fc))
    _gram_close(left, right.r.T @ right.r)
    np.testing.assert_allclose(left.mean, right.mean, rtol=1e-12, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(blocks)
def test_empty_factor_is_the_identity_bit_for_bit(a: np.ndarray) -> None:
    f = RFactor.of(a)
    assert f.merge(RFactor.empty(3)).to_params().bitwise_equal(f.to_params())
    assert RFactor.empty(3).merge(f).to_params().bitwise_equal(f.to_params())


def test_factor_is_upper_triangular_with_a_non_negative_diagonal() -> None:
    f = RFactor.of(np.random.default_rng(0).normal(size=(50, 4)))
    assert not np.tril(f.r, -1).any()
    assert (np.diagonal(f.r) >= 0).all()


def test_fewer_rows_than_columns_still_give_a_square_factor() -> None:
    rows = np.random.default_rng(1).normal(size=(2, 5))
    f = RFactor.of(rows)
    assert f.r.shape == (5, 5)
    _gram_close(f, Moments.of(rows).comoment)


def test_merged_mean_and_its_correction_give_the_exact_mean_far_from_zero() -> None:
    """Means of 1e8 ± 1 rounded to floats are off by ~1e-8; with their corrections, by ~1e-16 × 1."""
    x = np.random.default_rng(2).normal(loc=1e8, scale=1.0, size=(20_000, 2))
    merged = merge_all([RFactor.of(part) for part in np.array_split(x, 37)])
    for j in range(2):
        exact = sum((Fraction(v) for v in x[:, j].tolist()), Fraction(0)) / len(x)
        assert abs(float(Fraction(merged.mean[j]) - exact) + merged.mean_correction[j]) < 1e-14


def test_leading_block_is_the_factor_of_the_leading_columns() -> None:
    rows = np.random.default_rng(3).normal(size=(100, 4))
    _gram_close(RFactor.of(rows).leading(2), Moments.of(rows[:, :2]).comoment)


def test_uncentred_factor_squares_to_the_raw_cross_products() -> None:
    rows = np.random.default_rng(4).normal(loc=5.0, size=(100, 3))
    r = merge_all([RFactor.of(p) for p in np.array_split(rows, 4)]).uncentred()
    np.testing.assert_allclose(r.T @ r, rows.T @ rows, rtol=1e-12)


def test_factor_from_moments_squares_to_the_comoment_even_when_singular() -> None:
    rows = np.random.default_rng(5).normal(size=(30, 2))
    moments = Moments.of(np.column_stack([rows, rows[:, 0] + rows[:, 1]]))  # rank 2 of 3
    _gram_close(RFactor.from_moments(moments), moments.comoment)


def test_merging_an_unknown_factor_gives_an_unknown_factor() -> None:
    known = RFactor.of(np.ones((5, 2)) + np.arange(5)[:, None])
    unknown = RFactor.unknown(np.asarray(4), np.zeros(2))
    merged = known.merge(unknown)
    assert not merged.known
    assert int(merged.count) == 9


def test_subtracting_rows_leaves_the_summary_factor_unknown() -> None:
    spec = spec_for(2)
    rows = np.random.default_rng(6).normal(size=(40, 3))
    after = summarize(rows, spec, min_rows=0).subtract(summarize(rows[:10], spec, min_rows=0))
    assert not after.factor.known
    assert after.count == 30


def test_factor_survives_the_safetensors_codec_bit_for_bit() -> None:
    f = RFactor.of(np.random.default_rng(7).normal(size=(30, 3)))
    assert RFactor.from_params(decode(encode(f.to_params()))).to_params().bitwise_equal(f.to_params())


def _summary_params(**changes: np.ndarray) -> ParamSet:
    """A node's summary with some ``moments/factor/`` arrays replaced, as a hostile node might."""
    spec = spec_for(2)
    params = summarize(np.random.default_rng(8).normal(size=(30, 3)), spec, min_rows=0).to_params()
    return ParamSet({k: changes.get(k.removeprefix("moments/factor/"), v) for k, v in params.items()})


def _triangle(i: int, j: int, value: float) -> np.ndarray:
    r = np.triu(np.ones((3, 3)))
    r[i, j] = value
    return r


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"r": np.eye(2)}, "R factor: r must have shape (3, 3) for 3 columns; got (2, 2)"),
        ({"r": _triangle(2, 0, 0.5)}, "R factor: r must be upper triangular; got 0.5 below the diagonal at (2, 0)"),
        ({"r": _triangle(1, 1, np.inf)}, "R factor: r must be finite, or all NaN when unknown"),
        ({"r": _triangle(0, 1, np.nan)}, "R factor: r must be finite, or all NaN when unknown"),
        ({"mean": np.full(3, np.nan)}, "R factor: mean and mean_correction must be finite"),
        ({"count": np.float64(30.0)}, "R factor: count must be an integer array; got float64"),
        ({"count": np.int64(29)}, "the R factor must cover the moments' 3 columns and 30 rows; got 3 columns and 29"),
    ],
    ids=["shape", "lower", "infinite", "partly_nan", "mean", "count_dtype", "count_mismatch"],
)
def test_a_malformed_factor_from_a_node_is_rejected_with_the_reason(changes: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        Summary.from_params(_summary_params(**changes), spec_for(2))


def test_a_summary_without_its_factor_is_rejected() -> None:
    params = _summary_params()
    broken = ParamSet({k: v for k, v in params.items() if k != "moments/factor/r"})
    with pytest.raises(ValidationError, match=re.escape("summary parameters: missing ['moments/factor/r']")):
        Summary.from_params(broken, spec_for(2))


def test_the_condition_number_squared_would_lose_what_the_factor_keeps() -> None:
    """Why R: at cond 1e6 the co-moment keeps about 4 digits of the smallest singular value, R about 11."""
    gaussian = np.random.default_rng(9).normal(size=(200, 2))
    u = np.linalg.qr(gaussian - gaussian.mean(axis=0))[0]
    rows = (u * np.array([1.0, 1e-6])) @ np.array([[0.6, 0.8], [-0.8, 0.6]])  # centred, cond 1e6
    smallest = float(np.linalg.svd(rows - rows.mean(axis=0), compute_uv=False)[-1])
    from_comoment = math.sqrt(max(np.linalg.eigvalsh(Moments.of(rows).comoment)[0], 0.0))
    from_factor = float(np.linalg.svd(RFactor.of(rows).r, compute_uv=False)[-1])
    assert abs(from_factor - smallest) < 1e-10 * smallest
    assert abs(from_comoment - smallest) > 1e-6 * smallest
