"""Distributed DP in the fixed-point encoding: discrete Gaussian noise that wraps like a mask and sums exactly."""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError
from fedlearn.core.params import Spec
from fedlearn.privacy.encoding import NOISE_TAIL, FixedPoint, add_noise_into, check_capacity, decode_sum
from fedlearn.privacy.masked_input import masked_input
from fedlearn.privacy.masks import pairwise_sign
from fedlearn.privacy.noise import SeededNoise
from fedlearn.privacy.protocol import VectorLayout

D = 40_000
ENCODING = FixedPoint(clip=1.0, max_weight=1, fraction_bits=16, bits=32)


def test_add_noise_into_wraps_negative_noise_modulo_two_to_the_bits() -> None:
    block = np.array([0, 5, 2**32 - 1], dtype=np.uint32)

    add_noise_into(block, np.array([-3, -5, 1], dtype=np.int64))

    assert block.tolist() == [2**32 - 3, 0, 0]


def test_sum_of_noised_encodings_decodes_to_the_clipped_sum_plus_noise_of_sqrt_n_sigma() -> None:
    n, stddev = 5, 0.02
    rng = np.random.default_rng(0)
    updates = [rng.uniform(-1.5, 1.5, size=D) for _ in range(n)]  # beyond the clip range too
    layout = VectorLayout.of(Spec({"u": ((D,), "float64")}))  # type: ignore[arg-type]
    seeds = [bytes([i]) * 32 for i in range(n)]
    total = np.zeros(layout.length, dtype=np.uint32)
    for i, update in enumerate(updates):
        # pairwise masks with every other node: they cancel only if the noise wraps like they do
        masks = [(bytes(sorted((i, j))) * 16, pairwise_sign(f"n{i}", f"n{j}")) for j in range(n) if j != i]
        total += masked_input(
            layout, {"u": (update, None)}, weight=1, encoding=ENCODING, rounding_seed=seeds[i], masks=masks,
            noise=(SeededNoise(np.random.default_rng(100 + i)), stddev * 2.0**ENCODING.fraction_bits),
        )  # fmt: skip

    decoded = decode_sum(total[:D], encoding=ENCODING)
    residual = decoded - sum(np.clip(u, -1.0, 1.0) for u in updates)

    assert int(total[layout.weight_index]) == n  # the weight carries no noise
    assert np.std(residual) == pytest.approx(np.sqrt(n) * stddev, rel=0.02)
    assert abs(np.mean(residual)) < 4 * np.sqrt(n) * stddev / np.sqrt(D)


def test_capacity_with_noise_refuses_an_encoding_without_room_for_the_noise_tail() -> None:
    full = FixedPoint.fit(10, clip=1.0, max_weight=1)  # every bit taken by the values

    with pytest.raises(ConfigError, match=r"with distributed-DP noise.*set `fraction_bits` to at most"):
        check_capacity(10, full, noise_stddev=0.5)


def test_fit_with_noise_leaves_room_for_the_noise_tail() -> None:
    encoding = FixedPoint.fit(10, clip=1.0, max_weight=1, noise_stddev=0.5)

    check_capacity(10, encoding, noise_stddev=0.5)
    worst = 10 * (encoding.node_bound + np.ceil(NOISE_TAIL * 0.5 * 2.0**encoding.fraction_bits))
    assert worst <= 2**31 - 1
    finer = FixedPoint(clip=1.0, max_weight=1, fraction_bits=encoding.fraction_bits + 1)
    with pytest.raises(ConfigError):
        check_capacity(10, finer, noise_stddev=0.5)


def test_capacity_without_noise_is_unchanged() -> None:
    encoding = FixedPoint.fit(10, clip=1.0, max_weight=100)

    check_capacity(10, encoding)
    check_capacity(10, encoding, noise_stddev=0.0)
