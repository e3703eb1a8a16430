"""t-of-n Shamir secret sharing of 32-byte secrets over the prime field GF(2^521 - 1).

What is shared are a node's self-mask seed and its ``mask`` private key, both 32 bytes. A secret
is read as a big-endian integer ``s < 2^256`` and becomes the constant term of a polynomial
``f(x) = s + a_1 x + ... + a_{t-1} x^{t-1}`` whose other coefficients are drawn uniformly from
the field with :mod:`secrets`. The share of the node with index ``i`` (1..n, its place in the
round's node list) is ``(i, f(i))``; any ``t`` shares give ``s = f(0)`` by Lagrange
interpolation, and any ``t - 1`` of them are consistent with every secret equally (one
polynomial each), so they reveal nothing about it.

Why 2^521 - 1: the field must hold every 256-bit secret as a distinct element, so it needs a
prime above 2^256. The Mersenne prime 2^521 - 1 is the smallest standard one above that (its
primality is classical and re-checked by the tests with the Lucas-Lehmer test), so there is no
question of a mistyped constant. Its only cost is 66-byte share values instead of 33, which is
negligible next to a model update.

Reconstruction uses exactly ``threshold`` shares (those with the smallest x) and refuses fewer
than ``threshold`` or a repeated x. A result that does not fit in 32 bytes can only come from
inconsistent shares and is refused as well.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fedlearn.core.checks import check_int
from fedlearn.core.errors import ConfigError, SecureAggregationError

PRIME = 2**521 - 1
"""The field's modulus: the Mersenne prime 2^521 - 1."""

SECRET_BYTES = 32
"""Length of a shared secret: a mask seed or a raw X25519 private key."""

_X_BYTES = 4
_Y_BYTES = (PRIME.bit_length() + 7) // 8  # 66
SHARE_BYTES = _X_BYTES + _Y_BYTES
"""Length of :meth:`Share.to_bytes`: a 4-byte big-endian x, then a 66-byte big-endian y."""


@dataclass(frozen=True, slots=True)
class Share:
    """One point ``(x, f(x))`` of a sharing polynomial over GF(:data:`PRIME`); ``x`` is the holder's index."""

    x: int
    y: int

    def __post_init__(self) -> None:
        if isinstance(self.x, bool) or not isinstance(self.x, int) or not 1 <= self.x < 2 ** (8 * _X_BYTES):
            raise SecureAggregationError(f"share `x` must be an integer in [1, 2^32); got {self.x!r}")
        if isinstance(self.y, bool) or not isinstance(self.y, int) or not 0 <= self.y < PRIME:
            raise SecureAggregationError(f"share `y` of x={self.x} must be a field element in [0, 2^521 - 1)")

    def to_bytes(self) -> bytes:
        """Fixed-length canonical bytes: x (4 bytes) then y (66 bytes), both big-endian."""
        return self.x.to_bytes(_X_BYTES, "big") + self.y.to_bytes(_Y_BYTES, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> Share:
        """The share :meth:`to_bytes` wrote; SecureAggregationError for a wrong length or an out-of-field y."""
        if len(data) != SHARE_BYTES:
            raise SecureAggregationError(f"a share must be {SHARE_BYTES} bytes; got {len(data)}")
        return cls(int.from_bytes(data[:_X_BYTES], "big"), int.from_bytes(data[_X_BYTES:], "big"))


def split_secret(secret: bytes, *, threshold: int, x_values: Sequence[int]) -> tuple[Share, ...]:
    """Shares of the 32-byte ``secret``, one for each index in ``x_values``; any ``threshold`` of them rebuild it.

    ``x_values`` are the holders' indices (distinct, >= 1). The random coefficients come from
    :mod:`secrets`, the operating system's secure source.
    """
    if not isinstance(secret, bytes) or len(secret) != SECRET_BYTES:
        raise ConfigError(f"`secret` must be {SECRET_BYTES} bytes; got {secret!r:.40}")
    xs = list(x_values)
    if not all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x < 2 ** (8 * _X_BYTES) for x in xs):
        raise ConfigError(f"`x_values` must be node indices, integers in [1, 2^32); got {xs}")
    if len(set(xs)) != len(xs):
        raise ConfigError(f"`x_values` must be distinct; got {sorted(xs)}")
    threshold = _check_threshold(threshold)
    if threshold > len(xs):
        raise ConfigError(f"`threshold` must be at most the number of shares, {len(xs)}; got {threshold}")
    coefficients = [int.from_bytes(secret, "big"), *(secrets.randbelow(PRIME) for _ in range(threshold - 1))]
    return tuple(Share(x, evaluate_polynomial(coefficients, x, PRIME)) for x in xs)


def combine_shares(shares: Iterable[Share], *, threshold: int) -> bytes:
    """The 32-byte secret from at least ``threshold`` shares with distinct x.

    Raises SecureAggregationError for fewer than ``threshold`` shares, a repeated x, or shares
    that interpolate to a value no 32-byte secret has (they come from different polynomials).
    """
    threshold = _check_threshold(threshold)
    given = list(shares)
    if not all(isinstance(s, Share) for s in given):
        raise ConfigError("`shares` must all be Share instances")
    if len(given) < threshold:
        raise SecureAggregationError(
            f"reconstruction needs at least {threshold} shares (`threshold`); got {len(given)}"
        )
    xs = [s.x for s in given]
    if len(set(xs)) != len(xs):
        repeated = sorted({x for x in xs if xs.count(x) > 1})
        raise SecureAggregationError(f"shares must have distinct x; got x={repeated} more than once")
    chosen = sorted(given, key=lambda s: s.x)[:threshold]
    value = interpolate_at_zero([(s.x, s.y) for s in chosen], PRIME)
    if value >= 2 ** (8 * SECRET_BYTES):
        raise SecureAggregationError(
            "the shares interpolate to no 32-byte secret: they are inconsistent (from different polynomials)"
        )
    return value.to_bytes(SECRET_BYTES, "big")


def evaluate_polynomial(coefficients: Sequence[int], x: int, prime: int) -> int:
    """``sum(c_j x^j) mod prime`` by Horner's rule; ``coefficients[0]`` is the constant term."""
    result = 0
    for coefficient in reversed(coefficients):
        result = (result * x + coefficient) % prime
    return result


def interpolate_at_zero(points: Sequence[tuple[int, int]], prime: int) -> int:
    """``f(0) mod prime`` for the polynomial of degree < len(points) through ``points`` (distinct x, nonzero mod prime).

    Lagrange: ``f(0) = sum_j y_j prod_{m != j} x_m / (x_m - x_j)``.
    """
    xs = [x % prime for x, _ in points]
    if len(set(xs)) != len(xs) or 0 in xs:
        raise SecureAggregationError("interpolation needs distinct, nonzero x values")
    total = 0
    for j, (x_j, y_j) in enumerate(points):
        numerator, denominator = 1, 1
        for m, x_m in enumerate(xs):
            if m != j:
                numerator = numerator * x_m % prime
                denominator = denominator * (x_m - x_j) % prime
        total = (total + y_j * numerator * pow(denominator, -1, prime)) % prime
    return total


def _check_threshold(threshold: object) -> int:
    value = check_int("threshold", threshold, low=1)
    if value < 2:
        raise ConfigError(f"`threshold` must be at least 2, or every single share would be the secret; got {value}")
    return value
