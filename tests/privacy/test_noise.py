"""Noise sources and samplers: the deployed keystream is AES-256-CTR, and the samplers have the right laws."""

from __future__ import annotations

import math

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from scipy import stats

from fedlearn.core.errors import ConfigError
from fedlearn.privacy.noise import SeededNoise, SystemNoise, add_gaussian, discrete_gaussian, gaussian, uniforms


def _aes_ctr_words(key: bytes, words: int) -> np.ndarray:
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    return np.frombuffer(encryptor.update(bytes(8 * words)), dtype="<u8")


def test_system_noise_from_key_reads_the_aes_256_ctr_keystream_across_fills() -> None:
    source = SystemNoise.from_key(bytes(32))
    first, second = np.empty(5, np.uint64), np.empty(11, np.uint64)

    source.fill(first)
    source.fill(second)

    np.testing.assert_array_equal(np.concatenate([first, second]), _aes_ctr_words(bytes(32), 16))


def test_system_noise_draws_a_fresh_key_per_instance() -> None:
    a, b = np.empty(4, np.uint64), np.empty(4, np.uint64)

    SystemNoise().fill(a)
    SystemNoise().fill(b)

    assert not np.array_equal(a, b)


def test_seeded_noise_same_seed_same_words_different_seed_different_words() -> None:
    def words(seed: int) -> np.ndarray:
        out = np.empty(8, np.uint64)
        SeededNoise(np.random.default_rng(seed)).fill(out)
        return out

    np.testing.assert_array_equal(words(1), words(1))
    assert not np.array_equal(words(1), words(2))


def test_uniforms_are_strictly_inside_the_unit_interval_and_uniform() -> None:
    values = uniforms(SeededNoise(np.random.default_rng(0)), 100_000)

    assert values.min() > 0 and values.max() < 1
    assert stats.kstest(values, "uniform").pvalue > 1e-3


def test_gaussian_has_the_asked_standard_deviation_and_is_normal() -> None:
    values = gaussian(SeededNoise(np.random.default_rng(1)), 200_000, 3.0)

    assert np.std(values) == pytest.approx(3.0, rel=0.01)
    assert abs(np.mean(values)) < 0.03
    assert stats.kstest(values / 3.0, "norm").pvalue > 1e-3


def test_add_gaussian_noises_in_place_across_blocks_and_refuses_integers() -> None:
    values = np.zeros((3, 100_000), dtype=np.float32)

    add_gaussian(values, 0.5, SeededNoise(np.random.default_rng(2)))

    assert values.dtype == np.float32
    assert np.std(values) == pytest.approx(0.5, rel=0.01)
    with pytest.raises(ConfigError, match="float arrays"):
        add_gaussian(np.zeros(3, np.int64), 1.0, SeededNoise(np.random.default_rng(2)))


@pytest.mark.parametrize("sigma", [0.7, 2.0, 6.5])
def test_discrete_gaussian_frequencies_match_the_exact_pmf(sigma: float) -> None:
    draws = 200_000
    samples = discrete_gaussian(SeededNoise(np.random.default_rng(3)), draws, sigma)
    support = np.arange(-math.ceil(12 * sigma), math.ceil(12 * sigma) + 1)
    weights = np.exp(-(support.astype(np.float64) ** 2) / (2 * sigma**2))
    pmf = weights / weights.sum()

    counts = np.array([np.count_nonzero(samples == k) for k in support])

    assert samples.dtype == np.int64 and counts.sum() == draws  # nothing falls outside 12 sigma
    # every frequency within 5 standard errors of the exact probability
    assert np.all(np.abs(counts / draws - pmf) <= 5 * np.sqrt(pmf * (1 - pmf) / draws) + 1e-6)
    assert np.var(samples) == pytest.approx(float((pmf * support**2).sum()), rel=0.02)


def test_discrete_gaussian_refuses_a_sigma_beyond_exact_int64() -> None:
    with pytest.raises(ConfigError, match="at most 2\\^40"):
        discrete_gaussian(SeededNoise(np.random.default_rng(0)), 1, 2.0**41)
