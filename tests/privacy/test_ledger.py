"""The privacy ledger: merged charges, ε equal to the accountant's, JSON, and the refusals."""

from __future__ import annotations

import json

import pytest

from fedlearn.core.errors import ConfigError, PrivacyError
from fedlearn.privacy.accountant import Accountant, FixedSizeSampling, PoissonSampling
from fedlearn.privacy.ledger import Charge, PrivacyLedger

POISSON = PoissonSampling(rate=0.05)


def test_equal_charges_merge_by_count_and_others_stay_apart() -> None:
    ledger = PrivacyLedger(delta=1e-5)
    for _ in range(3):
        ledger = ledger.plus(Charge(noise_multiplier=1.0, sampling=POISSON))
    ledger = ledger.plus(Charge(noise_multiplier=2.0))

    assert ledger.charges == (Charge(noise_multiplier=1.0, sampling=POISSON, count=3), Charge(noise_multiplier=2.0))


@pytest.mark.parametrize("method", ["rdp", pytest.param("pld", marks=pytest.mark.slow)])
def test_ledger_epsilon_equals_the_accountant_for_the_same_rounds(method: str) -> None:
    ledger = PrivacyLedger(delta=1e-5, method=method)  # type: ignore[arg-type]
    for _ in range(20):
        ledger = ledger.plus(Charge(noise_multiplier=1.2, sampling=POISSON))

    expected = Accountant(delta=1e-5, method=method).epsilon(  # type: ignore[arg-type]
        noise_multiplier=1.2, sampling=POISSON, rounds=20
    )

    assert ledger.epsilon() == pytest.approx(expected, rel=1e-9)


def test_epsilon_after_is_what_plus_would_show_and_leaves_the_ledger_unchanged() -> None:
    ledger = PrivacyLedger(delta=1e-5).plus(Charge(noise_multiplier=1.0))
    charge = Charge(rho=0.01)

    after = ledger.epsilon_after(charge)

    assert after == ledger.plus(charge).epsilon() > ledger.epsilon()
    assert len(ledger.charges) == 1


def test_empty_ledger_spends_nothing() -> None:
    assert PrivacyLedger(delta=1e-5).epsilon() == 0.0


def test_ledger_survives_json_exactly() -> None:
    ledger = (
        PrivacyLedger(delta=1e-6, method="rdp")
        .plus(Charge(noise_multiplier=0.9, sampling=FixedSizeSampling(population=100, sample=10), count=4))
        .plus(Charge(rho=0.002, count=2))
        .plus(Charge(noise_multiplier=1.5))
    )

    restored = PrivacyLedger.from_json(json.loads(json.dumps(ledger.to_json())))

    assert restored == ledger  # the same charges, so the same ε


def test_pld_refuses_zcdp_charges_and_rdp_refuses_mixed_sampling() -> None:
    with pytest.raises(PrivacyError, match="cannot compose zCDP"):
        PrivacyLedger(delta=1e-5, method="pld").plus(Charge(rho=0.01)).epsilon()
    mixed = (
        PrivacyLedger(delta=1e-5)
        .plus(Charge(noise_multiplier=1.0, sampling=POISSON))
        .plus(Charge(noise_multiplier=1.0, sampling=FixedSizeSampling(population=10, sample=2)))
    )
    with pytest.raises(PrivacyError, match="cannot mix fixed-size sampling"):
        mixed.epsilon()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (Charge, "give exactly one"),
        (lambda: Charge(noise_multiplier=1.0, rho=0.1), "give exactly one"),
        (lambda: Charge(rho=0.1, sampling=POISSON), "cannot be amplified"),
        (lambda: Charge(noise_multiplier=1.0, count=0), "`count` must be"),
    ],
)
def test_malformed_charges_are_refused(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        build()
