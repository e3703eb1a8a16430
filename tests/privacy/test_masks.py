"""Masks from AES-256-CTR: known answers, independence from block size, exact modular arithmetic."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

import fedlearn.privacy.masks as masks_module
from fedlearn.core.errors import ConfigError
from fedlearn.privacy.masks import Masker, apply_masks, blocks, expand_seed_into, keystream, new_seed, pairwise_sign

SEED = bytes(range(32))
DTYPES = [np.uint32, np.uint64]
PROPERTY = settings(max_examples=40, deadline=None)


def _keystream_by_ecb(seed: bytes, start_byte: int, length: int) -> bytes:
    """The CTR keystream computed independently: AES-256 of each big-endian counter block, from the raw cipher."""
    first, last = start_byte // 16, (start_byte + length + 15) // 16
    ecb = Cipher(algorithms.AES(seed), modes.ECB()).encryptor()
    stream = b"".join(ecb.update(block.to_bytes(16, "big")) for block in range(first, last))
    return stream[start_byte - 16 * first :][:length]


def test_aes256_known_answer_fips197() -> None:
    # FIPS-197 appendix C.3: the raw cipher the independent keystream below is built from.
    ecb = Cipher(algorithms.AES(SEED), modes.ECB()).encryptor()

    assert ecb.update(bytes.fromhex("00112233445566778899aabbccddeeff")).hex() == "8ea2b7ca516745bfeafc49904b496089"


def test_aes256_ctr_known_answer_nist_sp800_38a() -> None:
    # NIST SP 800-38A F.5.5, CTR-AES256.Encrypt; the counter's last byte carries from ff to 00.
    key = bytes.fromhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
    counter = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    plaintext = bytes.fromhex(
        "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
        "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
    )

    ciphertext = Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor().update(plaintext)

    assert ciphertext.hex() == (
        "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5"
        "2b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6"
    )


def test_mask_known_answer() -> None:
    # AES-256 under key 00..1f of the zero block is f29000b6 2a499fd0 a9f39a6a dd2e7780; read little-endian.
    assert expand_seed_into(SEED, 0, np.empty(4, np.uint32)).tolist() == [
        0xB60090F2, 0xD09F492A, 0x6A9AF3A9, 0x80772EDD,
    ]  # fmt: skip
    assert expand_seed_into(SEED, 0, np.empty(2, np.uint64)).tolist() == [0xD09F492AB60090F2, 0x80772EDD6A9AF3A9]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [0, 1, 3, 4, 5, 2**31 + 1, 2**33 + 3])
def test_mask_equals_the_independent_keystream(dtype: type, offset: int) -> None:
    width = np.dtype(dtype).itemsize

    mask = expand_seed_into(SEED, offset, np.empty(37, dtype))

    expected = np.frombuffer(_keystream_by_ecb(SEED, offset * width, 37 * width), dtype=f"<u{width}")
    assert np.array_equal(mask, expected)


@PROPERTY
@given(
    seed=st.binary(min_size=32, max_size=32),
    length=st.integers(1, 300),
    cuts=st.lists(st.integers(0, 300), max_size=6),
    start=st.integers(0, 2**40),
    wide=st.booleans(),
)
def test_same_seed_and_offset_give_the_same_mask_whatever_the_blocks(
    seed: bytes, length: int, cuts: list[int], start: int, wide: bool
) -> None:
    dtype = np.uint64 if wide else np.uint32
    whole = expand_seed_into(seed, start, np.empty(length, dtype))
    edges = sorted({0, length, *(c for c in cuts if c < length)})

    pieces = [expand_seed_into(seed, start + a, np.empty(b - a, dtype)) for a, b in itertools.pairwise(edges)]

    assert np.array_equal(np.concatenate(pieces), whole)


def test_different_seeds_give_different_masks() -> None:
    assert not np.array_equal(
        expand_seed_into(SEED, 0, np.empty(8, np.uint32)), expand_seed_into(new_seed(), 0, np.empty(8, np.uint32))
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_adding_then_subtracting_a_mask_restores_the_vector(dtype: type) -> None:
    vector = np.arange(1000, dtype=dtype) * dtype(2**20 + 7)
    original = vector.copy()

    apply_masks(vector, 10, [(SEED, 1)])
    masked = vector.copy()
    apply_masks(vector, 10, [(SEED, -1)])

    assert not np.array_equal(masked, original)
    assert np.array_equal(vector, original)


@pytest.mark.parametrize("dtype", DTYPES)
def test_masks_wrap_exactly_modulo_2_to_the_bits(dtype: type) -> None:
    modulus = 2 ** (np.dtype(dtype).itemsize * 8)
    seeds = [(SEED, 1), (bytes(32), 1), (b"\xff" * 32, -1)]
    vector = np.full(64, modulus - 3, dtype=dtype)
    masks = [expand_seed_into(seed, 5, np.empty(64, dtype)).tolist() for seed, _ in seeds]

    apply_masks(vector, 5, seeds, scratch=np.empty(100, dtype))

    expected = [(modulus - 3 + a + b - c) % modulus for a, b, c in zip(*masks, strict=True)]
    assert vector.tolist() == expected


def test_pairwise_masks_cancel_in_the_sum() -> None:
    x_a, x_b = np.arange(50, dtype=np.uint32), np.arange(50, dtype=np.uint32) * np.uint32(3)
    seed = new_seed()
    y_a = apply_masks(x_a.copy(), 0, [(seed, pairwise_sign("a", "b"))])
    y_b = apply_masks(x_b.copy(), 0, [(seed, pairwise_sign("b", "a"))])

    assert np.array_equal(y_a + y_b, x_a + x_b)


def test_masks_applied_block_by_block_equal_one_pass() -> None:
    seeds = [(new_seed(), 1), (new_seed(), -1), (new_seed(), 1)]
    whole = np.zeros(1000, dtype=np.uint64)
    apply_masks(whole, 0, seeds)
    blocked = np.zeros(1000, dtype=np.uint64)
    scratch = np.empty(128, dtype=np.uint64)

    for start, stop in blocks(1000, 128):
        apply_masks(blocked[start:stop], start, seeds, scratch=scratch)

    assert np.array_equal(blocked, whole)


def test_a_mask_longer_than_a_chunk_equals_the_independent_keystream() -> None:
    # 200,003 uint32 span several 128 KiB chunks of keystream and end inside an AES block.
    mask = expand_seed_into(SEED, 5, np.empty(200_003, np.uint32))

    expected = np.frombuffer(_keystream_by_ecb(SEED, 5 * 4, 200_003 * 4), dtype="<u4")
    assert np.array_equal(mask, expected)


@pytest.fixture(params=[True, False], ids=["gcm", "ctr"])
def cipher_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Both ways of making keystream, whichever this machine would pick."""
    monkeypatch.setattr(masks_module, "_gcm_is_faster", lambda: request.param)
    return bool(request.param)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [0, 1, 3, 4, 7, 8, 9])
def test_masks_near_the_start_equal_the_independent_keystream_either_way(
    cipher_path: bool, dtype: type, offset: int
) -> None:
    width = np.dtype(dtype).itemsize

    mask = expand_seed_into(SEED, offset, np.empty(50_001, dtype))

    expected = np.frombuffer(_keystream_by_ecb(SEED, offset * width, 50_001 * width), dtype=f"<u{width}")
    assert np.array_equal(mask, expected)


@PROPERTY
@given(start=st.integers(0, 40), sizes=st.lists(st.integers(0, 70), min_size=1, max_size=8), gcm=st.booleans())
def test_keystream_read_in_pieces_is_the_keystream(start: int, sizes: list[int], gcm: bool) -> None:
    original = masks_module._gcm_is_faster
    masks_module._gcm_is_faster = lambda: gcm  # type: ignore[assignment]
    try:
        encryptor, _ = keystream(SEED, start, start + sum(sizes))
        pieces = []
        for size in sizes:
            out = bytearray(size)
            encryptor.update_into(bytes(size), out)
            pieces.append(bytes(out))
    finally:
        masks_module._gcm_is_faster = original  # type: ignore[assignment]

    assert b"".join(pieces) == _keystream_by_ecb(SEED, start, sum(sizes))


def test_a_stream_past_where_gcm_must_stop_goes_on_with_ctr(cipher_path: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(masks_module, "_GCM_END", 32 + 16 * 40)  # a GCM stream may cover 40 blocks here
    seeds = [(SEED, 1), (bytes(32), -1)]
    vector = np.zeros(1000, dtype=np.uint32)
    expected = _masks_by_expansion(seeds, vector, 0)
    masker = Masker(seeds, chunk_elements=64)

    for start, stop in blocks(1000, 100):
        masker.apply(vector[start:stop], start)

    assert np.array_equal(vector, expected)


def test_the_faster_cipher_is_chosen_once() -> None:
    masks_module._gcm_is_faster.cache_clear()

    assert masks_module._gcm_is_faster() in (True, False)
    assert masks_module._gcm_is_faster.cache_info().misses == 1


def _masks_by_expansion(seeds: list[tuple[bytes, int]], vector: np.ndarray, offset: int) -> np.ndarray:
    """The straightforward way: expand each whole mask, then add or subtract it."""
    out = vector.copy()
    for seed, sign in seeds:
        mask = expand_seed_into(seed, offset, np.empty_like(vector))
        out = out + mask if sign == 1 else out - mask
    return out


@PROPERTY
@given(
    signs=st.lists(st.sampled_from([1, -1]), min_size=0, max_size=5),
    length=st.integers(1, 400),
    cuts=st.lists(st.integers(0, 400), max_size=6),
    offset=st.integers(0, 2**36),
    chunk=st.integers(1, 64),
    wide=st.booleans(),
)
def test_masker_block_after_block_equals_expanding_each_mask(
    signs: list[int], length: int, cuts: list[int], offset: int, chunk: int, wide: bool
) -> None:
    dtype = np.uint64 if wide else np.uint32
    seeds = [(bytes([i]) * 32, sign) for i, sign in enumerate(signs)]
    vector = np.arange(length, dtype=dtype) * dtype(2**31 + 11)
    expected = _masks_by_expansion(seeds, vector, offset)
    masker = Masker(seeds, dtype=dtype, chunk_elements=chunk)
    edges = sorted({0, length, *(c for c in cuts if c < length)})

    for a, b in itertools.pairwise(edges):
        masker.apply(vector[a:b], offset + a)

    assert np.array_equal(vector, expected)


def test_masker_restarts_its_ciphers_for_blocks_out_of_order() -> None:
    seeds = [(SEED, 1), (bytes(32), -1)]
    vector = np.zeros(1000, dtype=np.uint32)
    expected = _masks_by_expansion(seeds, vector, 0)
    masker = Masker(seeds, chunk_elements=64)

    for start, stop in [(500, 1000), (0, 200), (300, 500), (200, 300)]:
        masker.apply(vector[start:stop], start)

    assert np.array_equal(vector, expected)


def test_masker_with_the_callers_scratch_equals_apply_masks() -> None:
    seeds = [(SEED, -1), (bytes(32), 1), (b"\xff" * 32, -1)]
    vector = np.arange(3000, dtype=np.uint64)
    expected = apply_masks(vector.copy(), 17, seeds)

    Masker(seeds, dtype=np.uint64, scratch=np.empty(100, np.uint64)).apply(vector, 17)

    assert np.array_equal(vector, expected)


def test_masker_refuses_a_block_of_another_dtype() -> None:
    with pytest.raises(ConfigError, match="`vector` must be uint32 like the Masker; got uint64"):
        Masker([(SEED, 1)]).apply(np.zeros(4, np.uint64), 0)


@pytest.mark.parametrize(
    ("seeds", "message"), [([(SEED, 0)], "sign must be 1 or -1; got 0"), ([(b"short", 1)], "32 bytes")]
)
def test_masker_refuses_a_bad_seed_or_sign_up_front(seeds: list[tuple[bytes, int]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Masker(seeds)


def test_masks_past_the_end_of_the_keystream_are_refused() -> None:
    last = 2**128 * 16 // 4  # the first uint32 beyond 2^128 AES blocks

    with pytest.raises(ConfigError, match="past the end of a seed's keystream"):
        Masker([(SEED, 1)]).apply(np.zeros(4, np.uint32), last - 2)


def test_blocks_cover_the_range_in_order() -> None:
    assert list(blocks(10, 4)) == [(0, 4), (4, 8), (8, 10)]
    assert list(blocks(0, 4)) == []


def test_new_seed_is_32_fresh_bytes() -> None:
    assert len(new_seed()) == 32 and new_seed() != new_seed()


@pytest.mark.parametrize(
    "out",
    [np.empty(4, np.int32), np.empty(4, np.float64), np.empty((2, 2), np.uint32), np.empty(8, np.uint32)[::2]],
    ids=["signed", "float", "2-d", "strided"],
)
def test_expand_refuses_arrays_it_cannot_fill(out: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="contiguous 1-D uint32 or uint64"):
        expand_seed_into(SEED, 0, out)


def test_expand_refuses_a_read_only_array() -> None:
    out = np.empty(4, np.uint32)
    out.flags.writeable = False

    with pytest.raises(ConfigError, match="writable"):
        expand_seed_into(SEED, 0, out)


@pytest.mark.parametrize("seed", [b"short", "a" * 32, bytes(33)])
def test_expand_refuses_a_bad_seed(seed: object) -> None:
    with pytest.raises(ConfigError, match="32 bytes"):
        expand_seed_into(seed, 0, np.empty(4, np.uint32))  # type: ignore[arg-type]


def test_apply_refuses_a_sign_other_than_plus_or_minus_one() -> None:
    with pytest.raises(ConfigError, match="sign must be 1 or -1; got 2"):
        apply_masks(np.zeros(4, np.uint32), 0, [(SEED, 2)])


def test_apply_refuses_a_scratch_of_another_dtype() -> None:
    with pytest.raises(ConfigError, match="`scratch` must be uint32"):
        apply_masks(np.zeros(4, np.uint32), 0, [(SEED, 1)], scratch=np.empty(4, np.uint64))


def test_pairwise_sign_refuses_a_node_with_itself() -> None:
    with pytest.raises(ConfigError, match="two different nodes"):
        pairwise_sign("a", "a")
