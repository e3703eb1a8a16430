"""Masks: a 256-bit seed expanded into integers mod 2^32 or 2^64 by AES-256-CTR, block by block.

The mask of a seed is the AES-256-CTR keystream under the key ``seed`` with a zero initial
counter block, read as little-endian unsigned integers of the vector's width (4 bytes for
``uint32``, 8 for ``uint64``). Element ``i`` therefore sits at byte ``i * width``, in counter
block ``i * width // 16``: :func:`expand_seed_into` starts the cipher at that block, so any
slice of the mask can be made on its own, and the same seed and offset give the same integers
whatever the block size. Every bit of keystream is used, so each element is uniform modulo 2^32
or 2^64 with no modulo bias.

Masks are never held whole. :func:`apply_masks` adds (+1) or subtracts (-1) the masks of many
seeds to one block of an encoded vector in place, reusing one scratch block, so memory is
O(block) whatever the model's size; numpy's unsigned arithmetic wraps, which is exactly
arithmetic modulo 2^bits. Each seed must expand one mask only: self-mask seeds are fresh each
round (:func:`new_seed`) and pairwise seeds are derived per run, round and pair
(:func:`fedlearn.privacy.keys.pairwise_mask_seed`).

Speed. Masking is bound by AES itself (7 to 9 GB/s per core with AES-NI), so the code around
it avoids everything else: a :class:`Masker` keeps one running cipher per seed across the
consecutive blocks of a vector (no cipher set-up per block), encrypts a shared zero buffer
straight into a small scratch chunk (no clearing pass), and adds each chunk of keystream to the
vector while both are still in the L2 cache. A keystream read from its start comes from
OpenSSL's AES-GCM when that is the faster code on the CPU (:func:`keystream` explains why the
bytes are the same). The integers are the same as :func:`expand_seed_into` gives, whatever the
blocks and chunks: only the order of the modular additions changes, and addition modulo 2^bits
does not depend on it.
"""

from __future__ import annotations

import functools
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fedlearn.core.checks import check_int
from fedlearn.core.errors import ConfigError

SEED_BYTES = 32
"""Length of a mask seed: an AES-256 key."""

DEFAULT_BLOCK_ELEMENTS = 1 << 18
"""Elements per block when callers have no reason to choose: 1 MiB of ``uint32``, which stays in cache."""

_AES_BLOCK = 16
_DTYPES = (np.dtype(np.uint32), np.dtype(np.uint64))
_CHUNK_BYTES = 1 << 17
"""Keystream made per cipher call: 128 KiB, so a chunk and the block it is added to stay in the L2 cache."""
_ZEROS = memoryview(bytes(_CHUNK_BYTES))
"""What the cipher encrypts: AES-CTR of zeros is the keystream itself. Read-only and shared."""
_GCM_START = 2 * _AES_BLOCK
"""The first byte AES-GCM with a 96-bit IV of zeros encrypts with: counter block 2."""
_GCM_END = _GCM_START + 2**36 - 32
"""Where one AES-GCM encryption must stop (SP 800-38D: 2^39 - 256 bits), before its 32-bit counter wraps."""
_KEYSTREAM_END = 2**128 * _AES_BLOCK


def new_seed() -> bytes:
    """A fresh 32-byte seed from the operating system's secure random source (:mod:`secrets`)."""
    return secrets.token_bytes(SEED_BYTES)


def expand_seed_into(seed: bytes, offset: int, out: np.ndarray) -> np.ndarray:
    """Fill ``out`` with elements ``offset .. offset + len(out)`` of ``seed``'s mask, and return it.

    ``out`` is a writable, C-contiguous one-dimensional ``uint32`` or ``uint64`` array; its dtype
    chooses the modulus (2^32 or 2^64).
    """
    _check_seed(seed)
    _check_vector("out", out)
    offset = check_int("offset", offset)
    _check_in_keystream(offset, len(out), out.itemsize)
    encryptor, _ = keystream(seed, offset * out.itemsize, (offset + len(out)) * out.itemsize)
    view = memoryview(out).cast("B")  # type: ignore[arg-type]  # ndarray is a buffer
    for start in range(0, len(view), _CHUNK_BYTES):
        part = view[start : start + _CHUNK_BYTES]
        encryptor.update_into(_ZEROS[: len(part)], part)
    if sys.byteorder == "big":  # the mask is defined little-endian
        out.byteswap(inplace=True)
    return out


class Keystream(Protocol):
    """What :func:`keystream` returns: an encryptor of zeros, whose output is the keystream."""

    def update_into(self, data: Any, buf: Any, /) -> int: ...


def keystream(seed: bytes, start: int, stop: int) -> tuple[Keystream, int]:
    """An encryptor whose encryption of zeros is ``seed``'s keystream from byte ``start`` on, and where it must end.

    Each call continues where the last one stopped. The encryptor serves at least up to byte
    ``stop``, and at most up to the byte returned with it, past which a caller asks for a new one;
    callers check that they stay below 2^128 counter blocks.

    Near the start of the keystream, where OpenSSL's AES-GCM runs faster than its AES-CTR (CPUs
    with vector AES instructions: GCM's code uses them and CTR's does not), the bytes come from
    AES-GCM: with a 96-bit IV of zeros, GCM encrypts under the counter blocks 2, 3, ... (NIST SP
    800-38D, incrementing the last 32 bits), which are this keystream's blocks until 2^32; blocks
    0 and 1 come from CTR, and the tag is never made. The bytes are the same either way (the tests
    hold both against AES applied to each counter block), so the choice is only one of speed.
    """
    if start < _GCM_START and stop <= _GCM_END and _gcm_is_faster():
        return _GcmKeystream(seed, start), _GCM_END
    counter, skip = divmod(start, _AES_BLOCK)
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(counter.to_bytes(_AES_BLOCK, "big"))).encryptor()
    if skip:
        encryptor.update(bytes(skip))
    return encryptor, _KEYSTREAM_END


class _GcmKeystream:
    """The keystream from byte ``start`` < 32: the rest of blocks 0 and 1 by AES-CTR, then AES-GCM from block 2."""

    __slots__ = ("_gcm", "_head", "update_into")

    update_into: Callable[[Any, Any], int]

    def __init__(self, seed: bytes, start: int) -> None:
        ctr = Cipher(algorithms.AES(seed), modes.CTR(bytes(_AES_BLOCK))).encryptor()
        self._head = ctr.update(bytes(_GCM_START))[start:]
        self._gcm = Cipher(algorithms.AES(seed), modes.GCM(bytes(12))).encryptor()
        self.update_into = self._from_head if self._head else self._gcm.update_into

    def _from_head(self, data: Any, buf: Any) -> int:
        out = memoryview(buf).cast("B")
        taken = min(len(self._head), len(out))
        out[:taken] = self._head[:taken]
        if len(out) > taken:
            self._gcm.update_into(memoryview(data).cast("B")[taken:], out[taken:])
        self._head = self._head[taken:]
        if not self._head:  # from now on straight to OpenSSL
            self.update_into = self._gcm.update_into
        return len(out)


@functools.cache
def _gcm_is_faster() -> bool:
    """Whether OpenSSL's AES-GCM makes keystream faster than its AES-CTR here: timed once, on 1.5 MiB of each."""
    out = bytearray(_CHUNK_BYTES)

    def fastest(make: Callable[[], Keystream]) -> float:
        times = []
        for _ in range(3):
            encryptor = make()
            started = time.perf_counter()
            for _ in range(4):
                encryptor.update_into(_ZEROS, out)
            times.append(time.perf_counter() - started)
        return min(times)

    key = algorithms.AES(bytes(32))
    gcm = fastest(lambda: Cipher(key, modes.GCM(bytes(12))).encryptor())
    return gcm < fastest(lambda: Cipher(key, modes.CTR(bytes(_AES_BLOCK))).encryptor())


def apply_masks(
    vector: np.ndarray,
    offset: int,
    seeds_with_signs: Iterable[tuple[bytes, int]],
    *,
    scratch: np.ndarray | None = None,
) -> np.ndarray:
    """Add (sign +1) or subtract (sign -1) each seed's mask to ``vector`` in place, modulo 2^bits.

    ``vector`` is one block of an encoded vector, starting at element ``offset`` of the whole;
    ``scratch``, if given, is a reusable array of the same dtype and at least the same length
    (otherwise one chunk-sized array is allocated per call). Returns ``vector``. To mask many
    consecutive blocks of one vector, a :class:`Masker` is faster: it keeps its ciphers running.
    """
    _check_vector("vector", vector)
    if scratch is not None:
        _check_vector("scratch", scratch)
        if scratch.dtype != vector.dtype or len(scratch) < len(vector):
            raise ConfigError(
                f"`scratch` must be {vector.dtype} with at least {len(vector)} elements; "
                f"got {scratch.dtype} with {len(scratch)}"
            )
    masker = Masker(seeds_with_signs, dtype=vector.dtype, chunk_elements=max(1, len(vector)), scratch=scratch)
    return masker.apply(vector, offset)


class Masker:
    """Adds (+1) or subtracts (-1) the masks of many seeds to the blocks of one vector, in place.

    :meth:`apply` on a block gives what :func:`apply_masks` gives. Between calls the Masker keeps
    one AES-256-CTR cipher per seed where the last block ended, so masking a vector block after
    block in order sets up each cipher once; a block elsewhere restarts them (correct, slower).
    Memory is one scratch chunk of at most ``chunk_elements`` (default 128 KiB of keystream),
    or the caller's ``scratch``.
    """

    __slots__ = ("_chunk", "_ciphers", "_dtype", "_next", "_plus", "_seeds", "_until")

    def __init__(
        self,
        seeds_with_signs: Iterable[tuple[bytes, int]],
        *,
        dtype: np.dtype | type = np.uint32,
        chunk_elements: int | None = None,
        scratch: np.ndarray | None = None,
    ) -> None:
        self._dtype = np.dtype(dtype)
        if self._dtype not in _DTYPES:
            raise ConfigError(f"`dtype` of masks must be uint32 or uint64; got {self._dtype}")
        pairs = list(seeds_with_signs)
        for seed, sign in pairs:
            _check_seed(seed)
            if sign not in (1, -1) or isinstance(sign, bool):
                raise ConfigError(f"a mask's sign must be 1 or -1; got {sign!r}")
        # Additions first, then subtractions: modulo 2^bits the order does not change the result.
        self._seeds = [seed for seed, sign in pairs if sign == 1] + [seed for seed, sign in pairs if sign == -1]
        self._ciphers: list[tuple[Keystream, bool]] = []
        self._next: int | None = None
        self._until = 0
        limit = _CHUNK_BYTES // self._dtype.itemsize
        if chunk_elements is not None:
            limit = min(limit, check_int("chunk_elements", chunk_elements, low=1))
        if scratch is None:
            self._chunk = np.empty(limit, dtype=self._dtype)
        else:
            _check_vector("scratch", scratch)
            if scratch.dtype != self._dtype:
                raise ConfigError(f"`scratch` must be {self._dtype}; got {scratch.dtype}")
            self._chunk = scratch[: min(limit, len(scratch))]
        self._plus = sum(1 for _, sign in pairs if sign == 1)

    def apply(self, vector: np.ndarray, offset: int) -> np.ndarray:
        """Mask ``vector``, elements ``offset .. offset + len(vector)`` of the whole, in place; return it."""
        _check_vector("vector", vector)
        if vector.dtype != self._dtype:
            raise ConfigError(f"`vector` must be {self._dtype} like the Masker; got {vector.dtype}")
        offset = check_int("offset", offset)
        width = self._dtype.itemsize
        _check_in_keystream(offset, len(vector), width)
        if offset != self._next or offset + len(vector) > self._until:
            ciphers, until = [], 0
            for i, seed in enumerate(self._seeds):
                encryptor, until = keystream(seed, offset * width, (offset + len(vector)) * width)
                ciphers.append((encryptor, i < self._plus))
            self._ciphers, self._until = ciphers, until // width
        ciphers, scratch = self._ciphers, self._chunk
        step = len(scratch)
        raw = memoryview(scratch).cast("B")  # type: ignore[arg-type]  # ndarray is a buffer
        swap = sys.byteorder == "big"
        add, subtract = np.add, np.subtract
        for start in range(0, len(vector), step):
            block = vector[start : start + step]
            count = len(block)
            keys, out, zeros = scratch[:count], raw[: count * width], _ZEROS[: count * width]
            for encryptor, plus in ciphers:
                encryptor.update_into(zeros, out)
                if swap:  # the mask is defined little-endian
                    keys.byteswap(inplace=True)
                (add if plus else subtract)(block, keys, out=block)
        self._next = offset + len(vector)
        return vector


def pairwise_sign(node_id: str, peer_id: str) -> int:
    """+1 if ``node_id`` sorts before ``peer_id``, else -1: the two ends of a pair add and subtract one mask."""
    if node_id == peer_id:
        raise ConfigError(f"a pairwise mask needs two different nodes; got {node_id!r} twice")
    return 1 if node_id < peer_id else -1


def blocks(length: int, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive blocks covering ``range(length)``, each at most ``block_elements`` long."""
    length = check_int("length", length)
    block_elements = check_int("block_elements", block_elements, low=1)
    for start in range(0, length, block_elements):
        yield start, min(start + block_elements, length)


def _check_in_keystream(offset: int, length: int, width: int) -> None:
    counter, skip = divmod(offset * width, _AES_BLOCK)
    if counter + (length * width + skip) // _AES_BLOCK >= 2**128:
        raise ConfigError(f"`offset` is past the end of a seed's keystream; got {offset}")


def _check_seed(seed: object) -> None:
    if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
        got = f"{len(seed)} bytes" if isinstance(seed, bytes) else type(seed).__name__
        raise ConfigError(f"a mask `seed` must be {SEED_BYTES} bytes; got {got}")


def _check_vector(name: str, array: object) -> None:
    if (
        not isinstance(array, np.ndarray)
        or array.dtype not in _DTYPES
        or array.ndim != 1
        or not array.flags.c_contiguous
        or not array.flags.writeable
    ):
        got = f"{array.dtype} array of shape {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
        raise ConfigError(f"`{name}` must be a writable, contiguous 1-D uint32 or uint64 array; got {got}")
