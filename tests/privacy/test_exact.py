"""Exact encoding: the decoded sum of encodings is the exact real sum of the float64 values, rounded once."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlearn.core.errors import ConfigError, ValidationError
from fedlearn.privacy.exact import FRACTION_BITS, MAX_NODES, decode_exact, encode_exact, exact_encoding
from fedlearn.privacy.masks import apply_masks, new_seed


def _sum(encodings: list[np.ndarray]) -> np.ndarray:
    total = np.zeros_like(encodings[0])
    for encoded in encodings:
        np.add(total, encoded, out=total)  # uint64: wraps modulo 2^64, as the masked sum does
    return total


def _exact_sum(values: list[float]) -> float:
    """The real sum of values, each first rounded to a multiple of 2^-96, then rounded once to float64."""
    scale = Fraction(2) ** FRACTION_BITS
    return float(sum((round(Fraction(v) * scale) for v in values), Fraction(0)) / scale)


def test_known_answer_limbs_of_one_and_minus_one() -> None:
    encoding = exact_encoding(3)  # 62-bit limbs
    one, minus_one = encode_exact(np.array([1.0, -1.0]), encoding).reshape(2, -1)

    assert encoding.limb_bits == 62 and encoding.limbs == 4
    assert one.tolist() == [0, 1 << (96 - 62), 0, 0]  # 2^96 = 2^34 · 2^62
    modulus = 1 << encoding.modulus_bits
    assert sum(int(limb) << (62 * j) for j, limb in enumerate(minus_one)) == modulus - (1 << 96)


def test_known_answer_sum_cancels_to_exactly_zero() -> None:
    encoding = exact_encoding(2)

    total = _sum([encode_exact(np.array([0.1, 1e20]), encoding), encode_exact(np.array([-0.1, -1e20]), encoding)])

    assert decode_exact(total, encoding).tolist() == [0.0, 0.0]


def test_the_sum_is_exact_where_float64_addition_is_not() -> None:
    values = [1e16, 1.0, -1e16, 1.0]
    encoding = exact_encoding(len(values))

    total = _sum([encode_exact(np.array([v]), encoding) for v in values])

    assert decode_exact(total, encoding).tolist() == [2.0]
    assert ((1e16 + 1.0) - 1e16) + 1.0 != 2.0  # what adding them in order gives


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(min_value=-1e25, max_value=1e25, allow_nan=False), min_size=3, max_size=3),
        min_size=1,
        max_size=40,
    )
)
def test_decoded_sums_equal_the_exact_real_sums(nodes: list[list[float]]) -> None:
    encoding = exact_encoding(len(nodes))

    decoded = decode_exact(_sum([encode_exact(np.array(v), encoding) for v in nodes]), encoding)

    assert decoded.tolist() == [_exact_sum([v[k] for v in nodes]) for k in range(3)]


def test_masks_that_cancel_leave_the_exact_sum() -> None:
    encoding = exact_encoding(3)
    seed = new_seed()
    first = apply_masks(encode_exact(np.array([1.5, -2.25]), encoding), 0, [(seed, 1)])
    second = apply_masks(encode_exact(np.array([0.5, 0.25]), encoding), 0, [(seed, -1)])

    assert decode_exact(_sum([first, second]), encoding).tolist() == [2.0, -2.0]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_values_without_a_sum_are_refused(bad: float) -> None:
    with pytest.raises(ValidationError, match="refuses NaN and infinite values"):
        encode_exact(np.array([1.0, bad]), exact_encoding(2))


def test_a_value_that_could_overflow_the_sum_is_refused_naming_the_limit() -> None:
    with pytest.raises(ValidationError, match=r"too large to sum exactly over 1000 nodes"):
        encode_exact(np.array([2.0**91]), exact_encoding(1000))


@pytest.mark.parametrize("nodes", [0, MAX_NODES + 1])
def test_an_impossible_number_of_nodes_is_refused(nodes: int) -> None:
    with pytest.raises(ConfigError, match="max_nodes"):
        exact_encoding(nodes)


def test_more_nodes_means_narrower_limbs_so_no_limb_sum_wraps() -> None:
    for nodes in (1, 2, 255, 256, MAX_NODES):
        encoding = exact_encoding(nodes)
        assert nodes * ((1 << encoding.limb_bits) - 1) < 2**64
        assert encoding.modulus_bits >= FRACTION_BITS + 101


def test_a_corrupt_sum_of_the_wrong_shape_is_refused() -> None:
    encoding = exact_encoding(2)

    with pytest.raises(ValidationError, match="whole values"):
        decode_exact(np.zeros(encoding.limbs + 1, dtype=np.uint64), encoding)
