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
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterable, Iterator

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
    start = check_int("offset", offset) * out.itemsize
    counter, skip = divmod(start, _AES_BLOCK)
    if counter + (out.nbytes + skip) // _AES_BLOCK >= 2**128:
        raise ConfigError(f"`offset` is past the end of a seed's keystream; got {offset}")
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(counter.to_bytes(_AES_BLOCK, "big"))).encryptor()
    if skip:
        encryptor.update(bytes(skip))
    out.fill(0)
    view = memoryview(out).cast("B")  # type: ignore[arg-type]  # ndarray is a buffer
    encryptor.update_into(view, view)  # keystream XOR zeros, in place: the keystream itself
    if sys.byteorder == "big":  # the mask is defined little-endian
        out.byteswap(inplace=True)
    return out


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
    (otherwise one block-sized array is allocated per call). Returns ``vector``.
    """
    _check_vector("vector", vector)
    if scratch is None:
        scratch = np.empty_like(vector)
    else:
        _check_vector("scratch", scratch)
        if scratch.dtype != vector.dtype or len(scratch) < len(vector):
            raise ConfigError(
                f"`scratch` must be {vector.dtype} with at least {len(vector)} elements; "
                f"got {scratch.dtype} with {len(scratch)}"
            )
        scratch = scratch[: len(vector)]
    for seed, sign in seeds_with_signs:
        if sign not in (1, -1) or isinstance(sign, bool):
            raise ConfigError(f"a mask's sign must be 1 or -1; got {sign!r}")
        expand_seed_into(seed, offset, scratch)
        if sign == 1:
            np.add(vector, scratch, out=vector)
        else:
            np.subtract(vector, scratch, out=vector)
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
