"""Shamir sharing: known answers in a small field and in GF(2^521 - 1), properties, and refusals."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlearn.core.errors import ConfigError, SecureAggregationError
from fedlearn.privacy.shamir import (
    PRIME,
    SHARE_BYTES,
    Share,
    combine_shares,
    evaluate_polynomial,
    interpolate_at_zero,
    split_secret,
)

PROPERTY = settings(max_examples=60, deadline=None)
SECRET = bytes(range(32))
S = int.from_bytes(SECRET, "big")
C2 = 12345678901234567890


def test_small_field_known_answer_by_hand() -> None:
    # f(x) = 7 + 3x + 5x^2 over GF(11): f(1) = 15 = 4, f(2) = 33 = 0, f(3) = 61 = 6, f(4) = 99 = 0, f(5) = 147 = 4.
    coefficients = [7, 3, 5]

    ys = [evaluate_polynomial(coefficients, x, 11) for x in range(1, 6)]

    assert ys == [4, 0, 6, 0, 4]


def test_small_field_interpolation_by_hand() -> None:
    # f(0) = 4 * (2*3)/((2-1)(3-1)) + 0 + 6 * (1*2)/((1-3)(2-3)) = 12 + 6 = 18 = 7 (mod 11).
    assert interpolate_at_zero([(1, 4), (2, 0), (3, 6)], 11) == 7
    assert interpolate_at_zero([(2, 0), (4, 0), (5, 4)], 11) == 7


def test_field_modulus_is_prime_by_lucas_lehmer() -> None:
    s = 4
    for _ in range(521 - 2):
        s = (s * s - 2) % PRIME

    assert PRIME == 2**521 - 1
    assert s == 0


def test_real_field_known_answer() -> None:
    # f(x) = S + 2^520 x + C2 x^2, and 2^521 = 1 (mod 2^521 - 1), so these are exact by hand.
    coefficients = [S, 2**520, C2]
    expected = {1: S + 2**520 + C2, 2: S + 1 + 4 * C2, 3: S + 1 + 2**520 + 9 * C2}

    assert {x: evaluate_polynomial(coefficients, x, PRIME) for x in expected} == expected


def test_real_field_fixed_shares_reconstruct_the_secret() -> None:
    shares = [Share(1, S + 2**520 + C2), Share(2, S + 1 + 4 * C2), Share(3, S + 1 + 2**520 + 9 * C2)]

    assert combine_shares(shares, threshold=3) == SECRET


def test_share_bytes_known_layout() -> None:
    share = Share(2, 5)

    assert share.to_bytes() == b"\x00\x00\x00\x02" + bytes(65) + b"\x05"
    assert len(share.to_bytes()) == SHARE_BYTES
    assert Share.from_bytes(share.to_bytes()) == share


@PROPERTY
@given(
    secret=st.binary(min_size=32, max_size=32),
    n=st.integers(2, 9),
    data=st.data(),
)
def test_any_threshold_shares_reconstruct(secret: bytes, n: int, data: st.DataObject) -> None:
    threshold = data.draw(st.integers(2, n))
    xs = data.draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n, unique=True))
    shares = split_secret(secret, threshold=threshold, x_values=xs)
    chosen = data.draw(st.lists(st.sampled_from(shares), min_size=threshold, max_size=n, unique=True))

    assert combine_shares(chosen, threshold=threshold) == secret


@PROPERTY
@given(
    secret=st.binary(min_size=32, max_size=32),
    candidate=st.integers(0, PRIME - 1),
    threshold=st.integers(2, 6),
    data=st.data(),
)
def test_fewer_than_threshold_shares_fit_every_secret(
    secret: bytes, candidate: int, threshold: int, data: st.DataObject
) -> None:
    xs = data.draw(st.lists(st.integers(1, 10_000), min_size=threshold - 1, max_size=threshold - 1, unique=True))
    seen = split_secret(secret, threshold=threshold, x_values=[*xs, 10_001])[: threshold - 1]

    coefficients = _polynomial_through([(0, candidate), *((s.x, s.y) for s in seen)], PRIME)

    assert len(coefficients) == threshold  # degree < t: a valid sharing polynomial of `candidate`
    assert evaluate_polynomial(coefficients, 0, PRIME) == candidate
    assert all(evaluate_polynomial(coefficients, s.x, PRIME) == s.y for s in seen)


@pytest.mark.parametrize("seen", [[(1, 3), (2, 5)], [(2, 0), (6, 6)]])
def test_fewer_than_threshold_shares_leave_every_secret_equally_likely(seen: list[tuple[int, int]]) -> None:
    prime, threshold = 7, 3
    counts = dict.fromkeys(range(prime), 0)
    for secret, a1, a2 in itertools.product(range(prime), repeat=threshold):
        if all(evaluate_polynomial([secret, a1, a2], x, prime) == y for x, y in seen):
            counts[secret] += 1

    assert set(counts.values()) == {1}  # exactly one polynomial per secret: the shares say nothing


def test_split_gives_one_share_per_index() -> None:
    shares = split_secret(SECRET, threshold=3, x_values=[5, 1, 9, 2])

    assert [s.x for s in shares] == [5, 1, 9, 2]


def test_split_uses_fresh_coefficients() -> None:
    first = split_secret(SECRET, threshold=2, x_values=[1, 2])
    second = split_secret(SECRET, threshold=2, x_values=[1, 2])

    assert first != second


def test_too_few_shares_are_refused() -> None:
    shares = split_secret(SECRET, threshold=3, x_values=[1, 2, 3, 4])

    with pytest.raises(SecureAggregationError, match=r"needs at least 3 shares .*got 2"):
        combine_shares(shares[:2], threshold=3)


def test_duplicate_share_points_are_refused() -> None:
    shares = split_secret(SECRET, threshold=2, x_values=[1, 2, 3])
    forged = Share(2, (shares[1].y + 1) % PRIME)

    with pytest.raises(SecureAggregationError, match=r"distinct x; got x=\[2\]"):
        combine_shares([shares[0], shares[1], forged], threshold=2)


def test_inconsistent_shares_are_refused() -> None:
    a = split_secret(SECRET, threshold=2, x_values=[1, 2])
    b = split_secret(bytes(32), threshold=2, x_values=[1, 2])
    mixed = [a[0], Share(2, random.Random(0).randrange(PRIME))]

    with pytest.raises(SecureAggregationError, match="inconsistent"):
        combine_shares(mixed, threshold=2)
    assert combine_shares([a[0], a[1]], threshold=2) == SECRET and combine_shares(b, threshold=2) == bytes(32)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 1, "x_values": [1, 2]}, "at least 2"),
        ({"threshold": 3, "x_values": [1, 2]}, "at most the number of shares, 2"),
        ({"threshold": 2, "x_values": [1, 1]}, "distinct"),
        (
            {"threshold": 2, "x_values": [0, 1]},
            r"`x_values` must be node indices, integers in \[1, 2\^32\); got \[0, 1\]",
        ),
        ({"threshold": 2, "x_values": [1, 2**32]}, "`x_values` must be node indices"),
    ],
)
def test_split_refuses_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        split_secret(SECRET, **kwargs)  # type: ignore[arg-type]


def test_split_refuses_a_secret_that_is_not_32_bytes() -> None:
    with pytest.raises(ConfigError, match="32 bytes"):
        split_secret(b"short", threshold=2, x_values=[1, 2])


@pytest.mark.parametrize(("x", "y"), [(0, 1), (2**32, 1), (1, PRIME), (1, -1)])
def test_out_of_range_share_is_refused(x: int, y: int) -> None:
    with pytest.raises(SecureAggregationError, match="share"):
        Share(x, y)


def test_share_of_wrong_length_is_refused() -> None:
    with pytest.raises(SecureAggregationError, match=f"{SHARE_BYTES} bytes; got 3"):
        Share.from_bytes(b"abc")


def _polynomial_through(points: list[tuple[int, int]], prime: int) -> list[int]:
    """Coefficients (constant first) of the polynomial of degree < len(points) through ``points``, by Lagrange."""
    result = [0] * len(points)
    for j, (x_j, y_j) in enumerate(points):
        basis, denominator = [1], 1
        for m, (x_m, _) in enumerate(points):
            if m != j:
                basis = [(a - x_m * b) % prime for a, b in zip([0, *basis], [*basis, 0], strict=True)]
                denominator = denominator * (x_j - x_m) % prime
        scale = y_j * pow(denominator, -1, prime) % prime
        result = [(r + scale * b) % prime for r, b in zip(result, basis, strict=True)]
    return result
