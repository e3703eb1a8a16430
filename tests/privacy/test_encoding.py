"""Fixed-point encoding: the stated error bound, unbiased rounding, blocks, and the overflow refusal."""

from __future__ import annotations

import hashlib
import itertools
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

import fedlearn.privacy.masks as masks_module
from fedlearn.core.errors import ConfigError
from fedlearn.privacy.encoding import (
    Encoder,
    FixedPoint,
    check_capacity,
    decode_sum,
    decode_weight,
    encode_into,
    encode_weight,
)
from fedlearn.privacy.framing import canonical
from fedlearn.privacy.masks import expand_seed_into

SEED = bytes(range(32))
PROPERTY = settings(max_examples=60, deadline=None)


def _encode(values: object, weight: int, encoding: FixedPoint, seed: bytes = SEED, offset: int = 0) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return encode_into(
        array, weight=weight, encoding=encoding, seed=seed, offset=offset, out=np.empty(array.shape, encoding.dtype)
    )


@PROPERTY
@given(
    bits=st.sampled_from([32, 64]),
    clip=st.sampled_from([0.5, 1.0, 3.0]),
    max_weight=st.integers(1, 1000),
    data=st.data(),
)
def test_decoded_sum_is_within_the_stated_bound(bits: int, clip: float, max_weight: int, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 8))
    encoding = FixedPoint.fit(n, clip=clip, max_weight=max_weight, bits=bits)
    dim = data.draw(st.integers(1, 12))
    floats = st.floats(-4 * clip, 4 * clip, allow_nan=False)
    updates = [data.draw(st.lists(floats, min_size=dim, max_size=dim)) for _ in range(n)]
    weights = [data.draw(st.integers(0, max_weight)) for _ in range(n)]
    total = np.zeros(dim, encoding.dtype)

    for i, (update, weight) in enumerate(zip(updates, weights, strict=True)):
        total += _encode(update, weight, encoding, seed=bytes([i]) * 32)

    decoded = decode_sum(total, encoding=encoding)
    exact = [
        sum(Fraction(w) * Fraction(min(max(u[j], -clip), clip)) for u, w in zip(updates, weights, strict=True))
        for j in range(dim)
    ]
    errors = [abs(Fraction(float(d)) - e) for d, e in zip(decoded, exact, strict=True)]
    assert max(errors) < encoding.error_bound(n)


def test_rounding_is_unbiased() -> None:
    encoding = FixedPoint(clip=1.0, max_weight=1, fraction_bits=4)  # 0.3 lies between 4/16 and 5/16
    q = _encode(np.full(200_000, 0.3), 1, encoding).view(np.int32)

    # q - 4 is Bernoulli(0.8): mean 4.8 units, standard error 0.4 / sqrt(200000) = 0.0009 units.
    assert set(np.unique(q).tolist()) == {4, 5}
    assert abs(q.mean() / 16 - 0.3) < 5 * 0.4 / math.sqrt(200_000) / 16


def test_exact_values_are_not_rounded() -> None:
    encoding = FixedPoint(clip=2.0, max_weight=3, fraction_bits=3)

    q = _encode([0.125, -1.5, 2.0, 0.0], 3, encoding).view(np.int32)

    assert q.tolist() == [3, -36, 48, 0]


def test_negative_values_wrap_like_twos_complement() -> None:
    encoding = FixedPoint(clip=1.0, max_weight=1, fraction_bits=0)

    assert _encode([-1.0], 1, encoding).tolist() == [2**32 - 1]
    assert _encode([-1.0], 1, FixedPoint(clip=1.0, max_weight=1, fraction_bits=0, bits=64)).tolist() == [2**64 - 1]


def test_values_beyond_clip_are_clipped() -> None:
    encoding = FixedPoint(clip=0.5, max_weight=10, fraction_bits=2)

    assert _encode([9.0, -9.0], 10, encoding).view(np.int32).tolist() == [20, -20]


def test_zero_weight_encodes_zeros() -> None:
    encoding = FixedPoint(clip=1.0, max_weight=10, fraction_bits=8)

    assert not _encode(np.linspace(-1, 1, 50), 0, encoding).any()


def test_encoding_block_by_block_equals_one_pass() -> None:
    encoding = FixedPoint(clip=1.0, max_weight=5, fraction_bits=10, bits=64)
    values = np.random.default_rng(0).normal(size=1000)
    whole = _encode(values, 3, encoding)

    pieces = [_encode(values[a:b], 3, encoding, offset=a) for a, b in [(0, 7), (7, 500), (500, 1000)]]

    assert np.array_equal(np.concatenate(pieces), whole)


def _encode_straightforwardly(
    values: np.ndarray, weight: int, encoding: FixedPoint, seed: bytes, offset: int
) -> np.ndarray:
    """The module's recipe step by step on whole arrays: the reference the streaming Encoder is held to."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=canonical("stochastic-rounding")).derive(seed)
    scaled = np.clip(np.asarray(values, dtype=np.float64), -encoding.clip, encoding.clip)
    scaled = np.clip(scaled * (weight * 2.0**encoding.fraction_bits), -encoding._limit(), encoding._limit())
    rounded = np.floor(scaled)
    uniforms = expand_seed_into(key, offset, np.empty(len(scaled), dtype=np.uint64)) >> np.uint64(11)
    rounded += uniforms * 2.0**-53 < scaled - rounded
    return rounded.astype(np.int64).astype(encoding.dtype)  # int64 -> uint32 keeps the value modulo 2^32


ENCODINGS = [
    FixedPoint(clip=1.0, max_weight=160, fraction_bits=17),
    FixedPoint(clip=1.0, max_weight=160, fraction_bits=40, bits=64),
    FixedPoint(clip=0.75, max_weight=3, fraction_bits=31),  # |q| up to 2^32: beyond int32, wraps modulo 2^32
    FixedPoint(clip=5e-324, max_weight=7, fraction_bits=500, bits=64),  # max_weight * clip is subnormal
]


@PROPERTY
@given(
    encoding=st.sampled_from(ENCODINGS),
    values=st.lists(st.floats(-3, 3, allow_nan=False, allow_subnormal=True), min_size=1, max_size=300),
    cuts=st.lists(st.integers(0, 300), max_size=5),
    offset=st.integers(0, 2**40),
    chunk=st.integers(1, 70),
    data=st.data(),
)
def test_encoder_block_after_block_equals_the_straightforward_recipe(
    encoding: FixedPoint, values: list[float], cuts: list[int], offset: int, chunk: int, data: st.DataObject
) -> None:
    weight = data.draw(st.integers(0, encoding.max_weight))
    array = np.array(values)
    expected = _encode_straightforwardly(array, weight, encoding, SEED, offset)
    encoder = Encoder(encoding, seed=SEED, chunk_elements=chunk)
    out = np.empty(len(array), encoding.dtype)
    edges = sorted({0, len(array), *(c for c in cuts if c < len(array))})

    for a, b in itertools.pairwise(edges):
        encoder.encode(array[a:b], weight=weight, offset=offset + a, out=out[a:b])

    assert np.array_equal(out, expected)


def test_encoder_of_a_difference_equals_encoding_the_float64_difference() -> None:
    rng = np.random.default_rng(3)
    trained, base = rng.normal(size=5000).astype(np.float32), rng.normal(size=5000).astype(np.float32)
    encoding = ENCODINGS[0]
    expected = _encode_straightforwardly(trained.astype(np.float64) - base, 100, encoding, SEED, 9)

    out = Encoder(encoding, seed=SEED).encode(trained, weight=100, offset=9, out=np.empty(5000, np.uint32), minus=base)

    assert np.array_equal(out, expected)


@pytest.mark.parametrize("gcm", [True, False], ids=["gcm", "ctr"])
def test_encoder_from_the_first_element_equals_the_recipe_whichever_cipher(
    gcm: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(masks_module, "_gcm_is_faster", lambda: gcm)
    values = np.random.default_rng(5).normal(size=70_000)
    encoding = ENCODINGS[0]
    out = np.empty(70_000, encoding.dtype)
    encoder = Encoder(encoding, seed=SEED)

    for start, stop in [(0, 3), (3, 40_000), (40_000, 70_000)]:
        encoder.encode(values[start:stop], weight=9, offset=start, out=out[start:stop])

    assert np.array_equal(out, _encode_straightforwardly(values, 9, encoding, SEED, 0))


def test_encoder_restarts_its_stream_for_blocks_out_of_order() -> None:
    values = np.random.default_rng(4).normal(size=1000)
    encoding = ENCODINGS[1]
    out = np.empty(1000, encoding.dtype)
    encoder = Encoder(encoding, seed=SEED, chunk_elements=64)

    for start, stop in [(600, 1000), (0, 250), (250, 600)]:
        encoder.encode(values[start:stop], weight=5, offset=start, out=out[start:stop])

    assert np.array_equal(out, _encode_straightforwardly(values, 5, encoding, SEED, 0))


@pytest.mark.parametrize(
    ("encoding", "digest"),
    [(ENCODINGS[0], "225521b89ddd7dea40e6bf6c1f70267f"), (ENCODINGS[1], "7d4e3683060803ae0cedc067a4b5ab0c")],
)
def test_encoding_known_answer(encoding: FixedPoint, digest: str) -> None:
    # Pinned before the streaming Encoder replaced the array-at-a-time code: the integers did not change.
    values = np.random.default_rng(7).normal(scale=0.5, size=5000)
    values[:5] = [1.7, -3.0, 0.0, 0.25, -0.25]

    out = encode_into(values, weight=123, encoding=encoding, seed=SEED, offset=1000, out=np.empty(5000, encoding.dtype))

    assert hashlib.sha256(out.tobytes()).hexdigest()[:32] == digest


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_encoder_refuses_non_finite_values_in_any_chunk(bad: float) -> None:
    values = np.zeros(300)
    values[250] = bad

    with pytest.raises(ConfigError, match="`values` must be finite"):
        Encoder(ENCODINGS[0], seed=SEED, chunk_elements=100).encode(
            values, weight=1, offset=0, out=np.empty(300, np.uint32)
        )


def test_huge_finite_values_are_clipped_not_refused() -> None:
    encoding = FixedPoint(clip=1.0, max_weight=1, fraction_bits=0)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # their sum overflows on the way; that is no reason to warn or refuse
        q = _encode([1e308, 1e308, -1e308, -1e308], 1, encoding).view(np.int32)

    assert q.tolist() == [1, 1, -1, -1]


def test_encoder_refuses_a_base_of_another_length() -> None:
    with pytest.raises(ConfigError, match="`minus` must have 3 elements"):
        Encoder(ENCODINGS[0], seed=SEED).encode(
            np.zeros(3), weight=1, offset=0, out=np.empty(3, np.uint32), minus=np.zeros(4)
        )


def test_rounding_depends_on_the_seed() -> None:
    encoding = FixedPoint(clip=1.0, max_weight=1, fraction_bits=2)
    values = np.full(64, 0.1)

    assert not np.array_equal(_encode(values, 1, encoding, seed=SEED), _encode(values, 1, encoding, seed=bytes(32)))


def test_decode_reads_the_sum_as_signed_and_scales_it() -> None:
    encoding = FixedPoint(clip=1.0, max_weight=1, fraction_bits=2)

    assert decode_sum(np.array([2**32 - 6, 5], np.uint32), encoding=encoding).tolist() == [-1.5, 1.25]


def test_weight_is_carried_as_itself_and_summed_exactly() -> None:
    encoding = FixedPoint(clip=1.0, max_weight=2**31, fraction_bits=0, bits=64)
    weights = [2**31, 2**31 - 1, 17]

    total = sum(encode_weight(w, encoding) for w in weights) % 2**64

    assert decode_weight(total, encoding=encoding) == sum(weights)


@pytest.mark.parametrize("weight", [-1, 11, 2.5, True])
def test_weight_outside_the_range_is_refused(weight: object) -> None:
    with pytest.raises(ConfigError, match="`weight`"):
        encode_weight(weight, FixedPoint(clip=1.0, max_weight=10, fraction_bits=0))  # type: ignore[arg-type]


def test_non_finite_values_are_refused() -> None:
    with pytest.raises(ConfigError, match="`values` must be finite"):
        _encode([0.0, math.nan], 1, FixedPoint(clip=1.0, max_weight=1, fraction_bits=0))


def test_output_of_the_wrong_dtype_is_refused() -> None:
    encoding = FixedPoint(clip=1.0, max_weight=1, fraction_bits=0)

    with pytest.raises(ConfigError, match="`out` must be a uint32 array"):
        encode_into(np.zeros(3), weight=1, encoding=encoding, seed=SEED, offset=0, out=np.empty(3, np.uint64))


def test_fit_picks_the_most_fraction_bits_that_cannot_overflow() -> None:
    encoding = FixedPoint.fit(100, clip=1.0, max_weight=1000)

    # 100 * 1000 * 2^14 = 1.6e9 fits 2^31 - 1; 2^15 would be 3.3e9.
    assert encoding.fraction_bits == 14
    check_capacity(100, encoding)


def test_overflow_prone_configuration_is_refused_naming_fraction_bits() -> None:
    encoding = FixedPoint(clip=1.0, max_weight=1000, fraction_bits=20)

    with pytest.raises(ConfigError, match="set `fraction_bits` to at most 14") as refused:
        check_capacity(100, encoding)

    assert "2^31 - 1 = 2147483647" in str(refused.value) and "set `bits` to 64" in str(refused.value)


def test_suggested_fraction_bits_fit() -> None:
    for n_nodes, max_weight, clip in [(7, 123, 0.3), (1000, 60_000, 5.0), (3, 1, 1e-6)]:
        largest = FixedPoint.fit(n_nodes, clip=clip, max_weight=max_weight)
        too_fine = FixedPoint(clip=clip, max_weight=max_weight, fraction_bits=largest.fraction_bits + 1)

        check_capacity(n_nodes, largest)
        with pytest.raises(ConfigError, match=f"at most {largest.fraction_bits}"):
            check_capacity(n_nodes, too_fine)


def test_configuration_no_fraction_bits_can_save_is_refused_naming_max_weight() -> None:
    encoding = FixedPoint(clip=10.0, max_weight=10**6, fraction_bits=0)

    with pytest.raises(ConfigError, match="lower `max_weight` to at most 214"):
        check_capacity(10**6, encoding)


def test_64_bit_sums_hold_what_32_bit_sums_cannot() -> None:
    narrow = FixedPoint(clip=1.0, max_weight=10**6, fraction_bits=16)

    with pytest.raises(ConfigError):
        check_capacity(1000, narrow)
    check_capacity(1000, FixedPoint(clip=1.0, max_weight=10**6, fraction_bits=16, bits=64))


def test_weight_sum_overflow_is_refused() -> None:
    encoding = FixedPoint(clip=2.0**-40, max_weight=2**30, fraction_bits=0)

    with pytest.raises(ConfigError, match=r"sum of 8 weights .* lower `max_weight` to at most 536870911"):
        check_capacity(8, encoding)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"clip": 0.0}, "`clip`"),
        ({"clip": math.inf}, "`clip`"),
        ({"max_weight": 0}, "`max_weight`"),
        ({"fraction_bits": -1}, "`fraction_bits`"),
        ({"bits": 16}, "`bits` must be one of 32, 64"),
    ],
)
def test_invalid_fields_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FixedPoint(**{"clip": 1.0, "max_weight": 1, "fraction_bits": 0, **fields})  # type: ignore[arg-type]
