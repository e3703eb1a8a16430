"""The DifferentialPrivacy piece, adaptive clipping's share of the noise, and distributed DP's zCDP bound."""

from __future__ import annotations

import math

import pytest

from fedlearn.core.errors import ConfigError
from fedlearn.privacy.differential import (
    AdaptiveClipping,
    DifferentialPrivacy,
    distributed_rho,
    distributed_tau_share,
)


def test_infinite_budget_is_accepted_as_report_only() -> None:
    assert DifferentialPrivacy(noise_multiplier=1.0, epsilon=math.inf).epsilon == math.inf


def test_update_noise_multiplier_is_the_whole_noise_without_adaptive_clipping() -> None:
    assert DifferentialPrivacy(noise_multiplier=1.3, epsilon=1.0).update_noise_multiplier(100) == 1.3


def test_update_noise_multiplier_leaves_the_count_its_share() -> None:
    dp = DifferentialPrivacy(noise_multiplier=1.0, epsilon=1.0, adaptive=AdaptiveClipping(count_stddev=5.0))

    z_u = dp.update_noise_multiplier(100)

    # Andrew et al. 2021: z^-2 = z_u^-2 + (2 sigma_b)^-2
    assert z_u**-2 + (2 * 5.0) ** -2 == pytest.approx(1.0)
    assert z_u > 1.0


def test_adaptive_clipping_default_count_noise_is_a_twentieth_of_the_nodes() -> None:
    assert AdaptiveClipping().stddev(200) == 10.0


def test_count_noise_that_leaves_the_update_nothing_is_refused() -> None:
    dp = DifferentialPrivacy(noise_multiplier=5.0, epsilon=1.0, adaptive=AdaptiveClipping(count_stddev=0.5))

    with pytest.raises(ConfigError, match="leaves no budget"):
        dp.update_noise_multiplier(100)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: DifferentialPrivacy(noise_multiplier=0, epsilon=1), "`noise_multiplier` must be"),
        (lambda: DifferentialPrivacy(noise_multiplier=1, epsilon=0), "`epsilon` must be"),
        (lambda: DifferentialPrivacy(noise_multiplier=1, epsilon=1, delta=1), "`delta` must be"),
        (lambda: DifferentialPrivacy(noise_multiplier=1, epsilon=1, mechanism="global"), "`mechanism` must be"),  # type: ignore[arg-type]
        (
            lambda: DifferentialPrivacy(noise_multiplier=1, epsilon=1, mechanism="local", adaptive=AdaptiveClipping()),
            "adaptive clipping needs a noised count",
        ),
        (
            lambda: DifferentialPrivacy(noise_multiplier=1, epsilon=1, mechanism="distributed", accountant="pld"),
            "only the RDP accountant",
        ),
    ],
)
def test_impossible_settings_are_refused(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        build()


def test_distributed_rho_is_the_gaussian_rho_when_the_noise_is_fine() -> None:
    clip, noise, d, f, n = 1.0, 0.3, 1000, 16, 20
    sensitivity = clip * 2**f + math.sqrt(d)
    sigma = noise * 2**f

    rho = distributed_rho(clip=clip, noise_stddev=noise, dimension=d, fraction_bits=f, nodes=n)

    assert rho == pytest.approx(sensitivity**2 / (2 * n * sigma**2), rel=1e-12)
    assert distributed_tau_share(clip=clip, noise_stddev=noise, dimension=d, fraction_bits=f, nodes=n) < 1e-12


def test_distributed_rho_takes_the_smaller_of_the_theorems_two_bounds_with_tau() -> None:
    sigma, d, n = 0.6, 50, 10  # coarse noise: τ is far from negligible
    tau = 10 * sum(math.exp(-2 * math.pi**2 * sigma**2 * k / (k + 1)) for k in range(1, n))
    gaussian = (1.0 + math.sqrt(d)) ** 2 / (n * sigma**2)
    epsilon = min(math.sqrt(gaussian + 2 * tau * d), math.sqrt(gaussian) + tau * math.sqrt(d))

    rho = distributed_rho(clip=1.0, noise_stddev=sigma, dimension=d, fraction_bits=0, nodes=n)

    assert rho == pytest.approx(epsilon**2 / 2, rel=1e-12)
    assert distributed_tau_share(clip=1.0, noise_stddev=sigma, dimension=d, fraction_bits=0, nodes=n) > 0.01


def test_distributed_rho_falls_with_more_survivors() -> None:
    few = distributed_rho(clip=1.0, noise_stddev=0.2, dimension=100, fraction_bits=12, nodes=5)
    many = distributed_rho(clip=1.0, noise_stddev=0.2, dimension=100, fraction_bits=12, nodes=50)

    assert many == pytest.approx(few / 10)


def test_distributed_noise_below_half_an_integer_unit_is_refused() -> None:
    with pytest.raises(ConfigError, match="σ >= 1/2"):
        distributed_rho(clip=1.0, noise_stddev=0.1, dimension=10, fraction_bits=2, nodes=5)
