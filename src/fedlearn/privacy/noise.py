"""Noise for differential privacy: continuous and discrete Gaussian, from a seeded or a secure source.

Every sample starts as uniform 64-bit words from a :class:`NoiseSource`:

* :class:`SeededNoise` draws them from a ``numpy.random.Generator``, so a simulation with a seed
  adds the same noise every time (the design's determinism rule);
* :class:`SystemNoise` expands a key drawn from the operating system's secure source
  (``secrets``) by AES-256-CTR, the same vetted keystream that secure aggregation's masks use
  (:func:`fedlearn.privacy.masks.expand_seed_into`). Deployed noise must come from it: noise the
  coordinator could predict, it could subtract, and numpy's generators are predictable.

Both go through the same transformations below, so a test of the seeded path tests the
arithmetic of the deployed one. Words become doubles strictly inside (0, 1) by taking their top
53 bits plus one half ulp; a normal sample is the inverse normal CDF of one such double
(``scipy.special.ndtri``), so tails are cut at about 8.3 standard deviations, which a run of
10^15 samples would not reach. Discrete Gaussian samples follow Canonne, Kamath and Steinke
(2020), Algorithm 3: a discrete Laplace proposal, accepted with the Gaussian-to-Laplace ratio.
The acceptance test is computed in floating point, as TensorFlow Privacy's sampler does; the
integers it yields are what secure aggregation sums without rounding.

Noise is made block by block into the caller's array (:func:`add_gaussian`), so memory stays
O(block) on top of the model, however large the model is.
"""

from __future__ import annotations

import math
import secrets
from typing import Protocol

import numpy as np

from fedlearn.core.checks import NON_NEGATIVE, POSITIVE, check
from fedlearn.core.errors import ConfigError
from fedlearn.privacy.masks import SEED_BYTES, expand_seed_into

_BLOCK = 1 << 18
"""Samples made at a time: 2 MiB of words, which stays in cache."""
_REKEY_WORDS = 1 << 40
"""Words one key expands before :class:`SystemNoise` draws a fresh one (far below AES-CTR's 2^128 blocks)."""
_UNIT = 2.0**-53


class NoiseSource(Protocol):
    """Where noise's randomness comes from: fills an array with independent uniform 64-bit words."""

    def fill(self, out: np.ndarray) -> None:
        """Overwrite ``out`` (a C-contiguous ``uint64`` array) with fresh uniform words."""
        ...


class SeededNoise:
    """Uniform words from a numpy generator: reproducible, for simulation and tests only."""

    __slots__ = ("_rng",)

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def fill(self, out: np.ndarray) -> None:
        out[...] = self._rng.bit_generator.random_raw(out.size).reshape(out.shape)


class SystemNoise:
    """Uniform words from the AES-256-CTR keystream of a key drawn from the OS's secure source.

    Each instance draws its own key and reads its keystream forward, so no word is ever reused.
    """

    __slots__ = ("_key", "_offset")

    def __init__(self) -> None:
        self._key = secrets.token_bytes(SEED_BYTES)
        self._offset = 0

    @classmethod
    def from_key(cls, key: bytes) -> SystemNoise:
        """A source reading ``key``'s keystream: for known-answer tests, never for real noise."""
        source = cls()
        source._key = bytes(key)
        return source

    def fill(self, out: np.ndarray) -> None:
        if self._offset + out.size > _REKEY_WORDS:
            self._key, self._offset = secrets.token_bytes(SEED_BYTES), 0
        expand_seed_into(self._key, self._offset, out.reshape(-1))
        self._offset += out.size


def uniforms(source: NoiseSource, size: int) -> np.ndarray:
    """``size`` doubles uniform on (0, 1), never exactly 0 or 1: the top 53 bits of a word, plus half an ulp."""
    words = np.empty(size, dtype=np.uint64)
    source.fill(words)
    return ((words >> np.uint64(11)).astype(np.float64) + 0.5) * _UNIT


def gaussian(source: NoiseSource, size: int, std: float) -> np.ndarray:
    """``size`` samples of N(0, std²) as float64."""
    from scipy.special import ndtri  # imported when noise is drawn: scipy.special costs every process 0.14 s

    check("std", std, NON_NEGATIVE)
    return ndtri(uniforms(source, size)) * std


def add_gaussian(values: np.ndarray, std: float, source: NoiseSource) -> None:
    """Add N(0, std²) noise to every element of the float array ``values``, in place, block by block."""
    if values.dtype.kind != "f":
        raise ConfigError(f"Gaussian noise is added to float arrays; got dtype {values.dtype}")
    flat = values.reshape(-1)
    for start in range(0, flat.size, _BLOCK):
        stop = min(start + _BLOCK, flat.size)
        flat[start:stop] += gaussian(source, stop - start, std).astype(flat.dtype, copy=False)


def discrete_gaussian(source: NoiseSource, size: int, sigma: float) -> np.ndarray:
    """``size`` samples of the discrete Gaussian N_Z(0, sigma²) on the integers, as int64.

    P(x) is proportional to exp(-x² / (2 sigma²)). Sampled by rejection from the discrete Laplace
    with scale ``t = floor(sigma) + 1`` (Canonne, Kamath, Steinke 2020, Algorithm 3), which accepts
    more than half of the proposals for every ``sigma``.
    """
    check("sigma", sigma, POSITIVE)
    if sigma > 2.0**40:
        raise ConfigError(f"`sigma` must be at most 2^40 so that samples stay exact in int64; got {sigma:g}")
    scale = math.floor(sigma) + 1
    out = np.empty(size, dtype=np.int64)
    filled = 0
    while filled < size:
        wanted = size - filled
        batch = max(64, 2 * wanted)
        u = uniforms(source, 3 * batch).reshape(3, batch)
        # Geometric(1 - e^{-1/t}) on {0, 1, ...} by inversion; their difference is discrete Laplace.
        proposal = np.floor(-scale * np.log(u[0])) - np.floor(-scale * np.log(u[1]))
        accept = u[2] < np.exp(-((np.abs(proposal) - sigma**2 / scale) ** 2) / (2 * sigma**2))
        kept = proposal[accept][:wanted].astype(np.int64)
        out[filled : filled + kept.size] = kept
        filled += kept.size
    return out
