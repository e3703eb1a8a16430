"""A node's masked input: its update encoded in fixed point and masked, in one pass over the vector.

What a node sends in the masked-input stage is, for each element of the :class:`VectorLayout`,
the fixed-point encoding of its weighted update plus its self mask plus one pairwise mask (added
or subtracted) per partner, modulo ``2^bits``; the last element carries the weight, masked too.
:func:`masked_input` builds it block by block: each block is encoded (:class:`Encoder`) and
then masked (:class:`Masker`) while it is still in cache, with one running AES-CTR cipher per
seed for the whole vector. The result is bit for bit what the straightforward way gives:
:func:`encode_into` over each segment, the weight, then :func:`apply_masks` over the whole
vector (the tests hold the two side by side).

Under distributed differential privacy, ``noise`` adds discrete Gaussian noise to every encoded
element but the weight, block by block, after encoding and before masking
(:func:`fedlearn.privacy.encoding.add_noise_into`).

Memory is the output vector plus O(block): no float64 copy of the update, no mask held whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fedlearn.core.errors import ConfigError
from fedlearn.privacy.encoding import Encoder, FixedPoint, add_noise_into, encode_weight
from fedlearn.privacy.masks import DEFAULT_BLOCK_ELEMENTS, Masker, blocks
from fedlearn.privacy.noise import NoiseSource, discrete_gaussian
from fedlearn.privacy.protocol import VectorLayout


def masked_input(
    layout: VectorLayout,
    arrays: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
    *,
    weight: int,
    encoding: FixedPoint,
    rounding_seed: bytes,
    masks: Sequence[tuple[bytes, int]],
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
    noise: tuple[NoiseSource, float] | None = None,
) -> np.ndarray:
    """The encoded, masked vector of one node's update, of ``layout.length`` elements of ``encoding.dtype``.

    ``arrays`` maps each segment's name to ``(values, base)``: the segment encodes
    ``values - base`` (computed in float64), or ``values`` when ``base`` is None, weighted by
    ``weight`` if the segment is weighted and by 1 otherwise. ``rounding_seed`` keys the
    stochastic rounding; ``masks`` are ``(seed, +1 or -1)`` pairs, the self mask and the pairwise
    masks. ``block_elements`` bounds the blocks the vector is built in and the scratch memory.
    ``noise``, ``(source, sigma)``, adds discrete Gaussian noise of ``sigma`` encoded units to every
    element but the weight; the caller has checked that the encoding has room for it.
    """
    weight = encode_weight(weight, encoding)
    pieces: list[tuple[int, int, np.ndarray, np.ndarray | None, int]] = []
    for segment in layout.segments:
        if segment.name not in arrays:
            raise ConfigError(f"`arrays` lacks the segment {segment.name!r} of the layout")
        values, base = arrays[segment.name]
        flat = np.asarray(values).reshape(-1)
        flat_base = None if base is None else np.asarray(base).reshape(-1)
        if flat.size != segment.size or (flat_base is not None and flat_base.size != segment.size):
            got = flat.size if flat_base is None else f"{flat.size} and {flat_base.size}"
            raise ConfigError(f"segment {segment.name!r} has {segment.size} elements; its arrays have {got}")
        start = segment.start
        pieces.append((start, start + segment.size, flat, flat_base, weight if segment.weighted else 1))
    out = np.empty(layout.length, dtype=encoding.dtype)
    scratch = max(1, min(block_elements, layout.length))  # a small model gets small scratch
    encoder = Encoder(encoding, seed=rounding_seed, chunk_elements=scratch)
    masker = Masker(masks, dtype=encoding.dtype, chunk_elements=scratch)
    for start, stop in blocks(layout.length, block_elements):
        for first, last, values, base, piece_weight in pieces:
            low, high = max(start, first), min(stop, last)
            if low < high:
                encoder.encode(
                    values[low - first : high - first],
                    weight=piece_weight,
                    offset=low,
                    out=out[low:high],
                    minus=None if base is None else base[low - first : high - first],
                )
        if start <= layout.weight_index < stop:
            out[layout.weight_index] = weight
        noised = min(stop, layout.weight_index)
        if noise is not None and start < noised:
            source, sigma = noise
            add_noise_into(out[start:noised], discrete_gaussian(source, noised - start, sigma))
        masker.apply(out[start:stop], start)
    return out
