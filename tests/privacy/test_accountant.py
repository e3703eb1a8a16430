"""The privacy accountant: ε from dp-accounting's RDP and PLD accountants, calibration, and refusals."""

from __future__ import annotations

import dp_accounting
import pytest
from dp_accounting import pld, rdp

from fedlearn.core.errors import ConfigError, PrivacyError
from fedlearn.privacy.accountant import PLD_MIN_NOISE, Accountant, FixedSizeSampling, PoissonSampling
from fedlearn.privacy.differential import DifferentialPrivacy
from fedlearn.privacy.ledger import Charge, PrivacyLedger

POISSON = PoissonSampling(rate=0.01)


@pytest.mark.parametrize("method", ["rdp", pytest.param("pld", marks=pytest.mark.slow)])
def test_epsilon_grows_with_rounds_and_shrinks_with_noise(method: str) -> None:
    accountant = Accountant(delta=1e-5, method=method)  # type: ignore[arg-type]

    few = accountant.epsilon(noise_multiplier=1.1, sampling=POISSON, rounds=100)
    many = accountant.epsilon(noise_multiplier=1.1, sampling=POISSON, rounds=1000)
    noisier = accountant.epsilon(noise_multiplier=2.0, sampling=POISSON, rounds=1000)

    assert 0 < few < many and noisier < many
    assert accountant.epsilon(noise_multiplier=1.1, sampling=POISSON, rounds=0) == 0.0


def test_pld_is_at_least_as_tight_as_rdp() -> None:
    rdp = Accountant(delta=1e-5, method="rdp").epsilon(noise_multiplier=1.1, sampling=POISSON, rounds=1000)
    pld = Accountant(delta=1e-5, method="pld").epsilon(noise_multiplier=1.1, sampling=POISSON, rounds=1000)

    assert pld <= rdp
    assert rdp == pytest.approx(1.71, abs=0.01)  # dp-accounting's RDP for q = 0.01, σ = 1.1, 1000 rounds, δ = 1e-5


def test_sampling_amplifies_privacy() -> None:
    accountant = Accountant(delta=1e-5)
    everyone = accountant.epsilon(noise_multiplier=1.1, sampling=PoissonSampling(rate=1.0), rounds=10)
    tenth = accountant.epsilon(noise_multiplier=1.1, sampling=PoissonSampling(rate=0.1), rounds=10)

    assert tenth < everyone


@pytest.mark.parametrize("method", ["rdp", pytest.param("pld", marks=pytest.mark.slow)])
def test_calibrated_noise_spends_at_most_the_target_and_little_less(method: str) -> None:
    accountant = Accountant(delta=1e-5, method=method)  # type: ignore[arg-type]

    noise = accountant.calibrate(target_epsilon=2.0, sampling=POISSON, rounds=100)
    spent = accountant.epsilon(noise_multiplier=noise, sampling=POISSON, rounds=100)

    assert spent <= 2.0 + 1e-6
    assert accountant.epsilon(noise_multiplier=noise * 0.95, sampling=POISSON, rounds=100) > 2.0


def test_fixed_size_sampling_is_accounted_by_rdp_and_refused_by_pld() -> None:
    sampling = FixedSizeSampling(population=1000, sample=10)

    assert Accountant(delta=1e-5, method="rdp").epsilon(noise_multiplier=1.1, sampling=sampling, rounds=100) > 0
    with pytest.raises(PrivacyError, match="PLD accountant cannot account for fixed-size sampling"):
        Accountant(delta=1e-5, method="pld").epsilon(noise_multiplier=1.1, sampling=sampling, rounds=100)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Accountant(delta=0), r"`delta` must be in \(0, 1\); got 0"),
        (lambda: Accountant(delta=1e-5, method="moments"), "`method` must be one of rdp, pld"),  # type: ignore[arg-type]
        (lambda: PoissonSampling(rate=0), r"`rate` must be in \(0, 1\]; got 0"),
        (lambda: FixedSizeSampling(population=10, sample=11), "`sample` must be at most `population` \\(10\\)"),
        (lambda: Accountant(delta=1e-5).epsilon(noise_multiplier=0, sampling=POISSON, rounds=1), "noise_multiplier"),
    ],
)
def test_impossible_settings_are_refused_naming_the_parameter(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        build()


def _dp_accounting_epsilon(method: str, noise: float, rate: float, rounds: int, delta: float) -> float:
    """ε as dp-accounting computes it when called directly, without fedlearn in between."""
    event: dp_accounting.DpEvent = dp_accounting.GaussianDpEvent(noise)
    if rate < 1:
        event = dp_accounting.PoissonSampledDpEvent(rate, event)
    accountant = rdp.RdpAccountant() if method == "rdp" else pld.PLDAccountant()
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, rounds))
    return float(accountant.get_epsilon(delta))


GRID = [(noise, rate, rounds) for noise in (0.7, 1.5) for rate in (0.01, 0.2, 1.0) for rounds in (1, 60)]


@pytest.mark.parametrize(("noise", "rate", "rounds"), GRID)
def test_rdp_epsilon_equals_dp_accounting_called_directly(noise: float, rate: float, rounds: int) -> None:
    ours = Accountant(delta=1e-5, method="rdp").epsilon(
        noise_multiplier=noise, sampling=PoissonSampling(rate=rate), rounds=rounds
    )

    assert ours == pytest.approx(_dp_accounting_epsilon("rdp", noise, rate, rounds, 1e-5), rel=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("noise", "rate", "rounds"), [(n, q, k) for n in (0.8, 1.5) for q in (0.01, 0.2) for k in (1, 20)]
)
def test_pld_epsilon_equals_dp_accounting_called_directly(noise: float, rate: float, rounds: int) -> None:
    ours = Accountant(delta=1e-5, method="pld").epsilon(
        noise_multiplier=noise, sampling=PoissonSampling(rate=rate), rounds=rounds
    )

    assert ours == pytest.approx(_dp_accounting_epsilon("pld", noise, rate, rounds, 1e-5), rel=1e-9)


@pytest.mark.parametrize(("noise", "sample", "rounds"), [(0.8, 5, 10), (1.5, 20, 40)])
def test_fixed_size_rdp_epsilon_equals_dp_accounting_with_replace_one(noise: float, sample: int, rounds: int) -> None:
    ours = Accountant(delta=1e-5).epsilon(
        noise_multiplier=noise, sampling=FixedSizeSampling(population=100, sample=sample), rounds=rounds
    )
    direct = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    direct.compose(
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.SampledWithoutReplacementDpEvent(100, sample, dp_accounting.GaussianDpEvent(noise)), rounds
        )
    )

    assert ours == pytest.approx(direct.get_epsilon(1e-5), rel=1e-9)


def test_pld_is_never_asked_about_a_noise_so_small_its_grid_would_take_gigabytes() -> None:
    # A coordinator's config or a ledger must not be able to make the accountant allocate without bound.
    with pytest.raises(PrivacyError, match=r"at least 0\.5"):
        Accountant(delta=1e-5, method="pld").epsilon(noise_multiplier=1e-3, sampling=POISSON, rounds=10)
    with pytest.raises(PrivacyError, match="use accountant = 'rdp'"):
        PrivacyLedger(delta=1e-5, method="pld", charges=(Charge(noise_multiplier=0.1),)).epsilon()
    with pytest.raises(ConfigError, match=r"`noise_multiplier` >= 0\.5"):
        DifferentialPrivacy(noise_multiplier=0.2, epsilon=10.0, accountant="pld")


def test_pld_calibration_for_a_loose_target_stops_at_its_least_noise() -> None:
    accountant = Accountant(delta=1e-5, method="pld")

    noise = accountant.calibrate(target_epsilon=1000.0, sampling=POISSON, rounds=1)

    assert noise == PLD_MIN_NOISE
    assert accountant.epsilon(noise_multiplier=noise, sampling=POISSON, rounds=1) <= 1000.0
