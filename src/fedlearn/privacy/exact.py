"""Exact encoding of float64 vectors for secure summation: the sum is the exact sum of the nodes' values.

Sufficient statistics (counts, sums, centred cross-products) must add up to what pooling the data
gives, to 1e-9 and better, whatever their scale. A 32- or 64-bit fixed point (:mod:`.encoding`)
cannot promise that for values whose magnitude nobody knows in advance. This encoding can:

1. Each float64 ``v`` is read as the integer ``round(v * 2^FRACTION_BITS)``. With 96 fraction bits
   that is exact for every ``|v| >= 2^-43`` (the product is a whole number of float64's 53-bit
   mantissa), and off by less than ``2^-97`` below that.
2. The integer is taken modulo ``2^(limbs * limb_bits)`` (two's complement) and split into
   ``limbs`` *limbs* of ``limb_bits`` bits, least significant first, each stored in a uint64.
3. Nodes mask the limbs with 64-bit masks; the coordinator sums them modulo ``2^64``. Each limb
   is below ``2^limb_bits`` and ``limb_bits = 64 - ceil(log2(n + 1))``, so the true sum of any
   limb over ``n`` nodes is below ``2^64``: the modular sum *is* the sum, with no lost carries.
4. :func:`decode_exact` recombines the limb sums with Python integers into ``Σ_i round(v_i·2^96)``,
   exactly, and rounds it once to the nearest float64.

So the decoded value is the exact real sum of the nodes' values (below ``2^-43`` in magnitude, up
to ``n · 2^-97``), rounded once: more accurate than adding the same float64s in the clear. The
capacity is ``2^(limbs·limb_bits - 1 - 96)``: :func:`exact_encoding` picks the number of limbs
for ``n`` nodes so that any sum below ``2^MAGNITUDE_BITS`` (about 10^30) fits, and
:func:`encode_exact` refuses NaN, infinities and values beyond ``2^MAGNITUDE_BITS / n``, so a
sum can never wrap around. Nothing here is random: the limbs of a value are a function of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedlearn.core.checks import Interval, check
from fedlearn.core.errors import ValidationError

FRACTION_BITS = 96
MAGNITUDE_BITS = 100
"""Sums of magnitude below ``2^100`` (about 1.3e30) fit; larger values are refused."""

MAX_NODES = 2**16 - 1
"""With 48-bit limbs the per-limb sums of this many nodes still fit in 64 bits."""


@dataclass(frozen=True, slots=True)
class ExactEncoding:
    """How many limbs of how many bits encode one value for sums over up to ``max_nodes`` nodes."""

    max_nodes: int
    limb_bits: int
    limbs: int

    @property
    def modulus_bits(self) -> int:
        return self.limb_bits * self.limbs

    def encoded_length(self, values: int) -> int:
        """The uint64 length of an encoded vector of ``values`` values."""
        return values * self.limbs


def exact_encoding(max_nodes: int) -> ExactEncoding:
    """The encoding for sums over up to ``max_nodes`` nodes (at most ``MAX_NODES``)."""
    check("max_nodes", max_nodes, Interval(1, MAX_NODES, integer=True))
    limb_bits = 64 - math.ceil(math.log2(max_nodes + 1))
    needed = FRACTION_BITS + MAGNITUDE_BITS + 1  # and a sign bit
    return ExactEncoding(max_nodes=max_nodes, limb_bits=limb_bits, limbs=math.ceil(needed / limb_bits))


def encode_exact(values: np.ndarray, encoding: ExactEncoding) -> np.ndarray:
    """``values`` (float64, 1-D) as uint64 limbs, value by value: ``encoding.limbs`` limbs per value.

    Refuses (ValidationError) a value that is not finite or whose magnitude could make a sum over
    ``encoding.max_nodes`` nodes leave the capacity.
    """
    flat = np.asarray(values, dtype=np.float64)
    if flat.ndim != 1:
        raise ValidationError(f"exact encoding takes a 1-D vector; got shape {flat.shape}")
    if not np.isfinite(flat).all():
        raise ValidationError("exact encoding refuses NaN and infinite values: they have no sum")
    limit = 2.0**MAGNITUDE_BITS / encoding.max_nodes
    if flat.size and float(np.abs(flat).max()) >= limit:
        raise ValidationError(
            f"a value of magnitude {float(np.abs(flat).max()):.3g} is too large to sum exactly over "
            f"{encoding.max_nodes} nodes (the limit is {limit:.3g})"
        )
    modulus = 1 << encoding.modulus_bits
    mask = (1 << encoding.limb_bits) - 1
    out = np.empty(encoding.encoded_length(flat.size), dtype=np.uint64)
    for i, value in enumerate(flat.tolist()):
        scaled = _scaled(value) % modulus
        for j in range(encoding.limbs):
            out[i * encoding.limbs + j] = (scaled >> (j * encoding.limb_bits)) & mask
    return out


def decode_exact(limb_sums: np.ndarray, encoding: ExactEncoding) -> np.ndarray:
    """The float64 sums from the (unmasked) sums of encoded vectors, each rounded once."""
    sums = np.asarray(limb_sums)
    if sums.dtype != np.uint64 or sums.ndim != 1 or sums.size % encoding.limbs:
        raise ValidationError(
            f"exact sums are a 1-D uint64 vector of whole values ({encoding.limbs} limbs each); "
            f"got {sums.dtype} of shape {sums.shape}"
        )
    modulus = 1 << encoding.modulus_bits
    half = modulus >> 1
    limbs = sums.reshape(-1, encoding.limbs).tolist()
    out = np.empty(len(limbs), dtype=np.float64)
    for i, parts in enumerate(limbs):
        total = sum(int(limb) << (j * encoding.limb_bits) for j, limb in enumerate(parts)) % modulus
        if total >= half:
            total -= modulus
        out[i] = math.ldexp(float(total), -FRACTION_BITS)  # float(total) rounds to nearest, even on ties
    return out


def _scaled(value: float) -> int:
    """``round(value * 2^FRACTION_BITS)`` as an exact integer (half to even)."""
    mantissa, exponent = math.frexp(value)  # value = mantissa * 2^exponent, 0.5 <= |mantissa| < 1
    integer = int(mantissa * 2**53)  # exact: a float64 mantissa has 53 bits
    shift = exponent - 53 + FRACTION_BITS
    if shift >= 0:
        return integer << shift
    return round(integer / (1 << -shift)) if -shift < 1024 else 0
