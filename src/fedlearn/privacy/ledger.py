"""The privacy ledger: every noisy release charged against a budget, composed into one ε.

A run's ledger, and a node's lifetime ledger, hold :class:`Charge` entries: one per round of a
DP training run, per noised statistic, per DP-SGD fit. ε at the ledger's δ is the composition of
all of them, computed by the :mod:`~fedlearn.privacy.accountant`'s ``dp-accounting`` back end,
so a ledger is charged with what actually ran (the sampling rate of that round, the nodes that
were available) rather than with what was planned.

A charge is one of:

* the Gaussian mechanism with ``noise_multiplier`` (noise standard deviation over sensitivity),
  optionally under node sampling, repeated ``count`` times;
* a ``rho``-zCDP release (Bun and Steinke 2016), which is how the sum of the nodes' discrete
  Gaussian noise in distributed DP is accounted; only the RDP accountant composes it.

Equal charges are merged into one with a larger ``count``, so a 10,000-round run composes a
handful of events, not 10,000. The ledger is plain JSON (:meth:`PrivacyLedger.to_json`), so the
store and a node's ledger file keep it as text and an auditor can read it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from fedlearn.core.checks import POSITIVE, Interval, Options, check
from fedlearn.core.errors import ConfigError, PrivacyError
from fedlearn.privacy.accountant import (
    METHODS,
    FixedSizeSampling,
    Method,
    PoissonSampling,
    Sampling,
    check_pld_noise,
)

if TYPE_CHECKING:  # dp-accounting takes most of a second to import; only accounting pays for it
    import dp_accounting

_AT_LEAST_ONE = Interval(1, math.inf, integer=True)
_DELTA = Interval(0, 1, closed="neither")


@dataclass(frozen=True, slots=True, kw_only=True)
class Charge:
    """One kind of release, repeated ``count`` times: a Gaussian mechanism (maybe sampled) or a zCDP one."""

    noise_multiplier: float | None = None
    rho: float | None = None
    sampling: Sampling | None = None
    count: int = 1

    def __post_init__(self) -> None:
        if (self.noise_multiplier is None) == (self.rho is None):
            raise ConfigError("a charge is either a Gaussian `noise_multiplier` or a zCDP `rho`; give exactly one")
        if self.noise_multiplier is not None:
            check("noise_multiplier", self.noise_multiplier, POSITIVE)
        if self.rho is not None:
            check("rho", self.rho, POSITIVE)
            if self.sampling is not None:
                raise ConfigError("a zCDP charge cannot be amplified by sampling here; account it unsampled")
        check("count", self.count, _AT_LEAST_ONE)

    def key(self) -> tuple[object, ...]:
        """What two charges must share to merge into one."""
        return (self.noise_multiplier, self.rho, self.sampling)

    def event(self) -> dp_accounting.DpEvent:
        import dp_accounting

        if self.rho is not None:
            single: dp_accounting.DpEvent = dp_accounting.ZCDpEvent(self.rho)
        else:
            assert self.noise_multiplier is not None
            single = dp_accounting.GaussianDpEvent(self.noise_multiplier)
            if self.sampling is not None:
                single = self.sampling.event(single)
        return single if self.count == 1 else dp_accounting.SelfComposedDpEvent(single, self.count)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count}
        if self.noise_multiplier is not None:
            out["noise_multiplier"] = self.noise_multiplier
        if self.rho is not None:
            out["rho"] = self.rho
        if isinstance(self.sampling, PoissonSampling):
            out["sampling"] = {"poisson": self.sampling.rate}
        elif isinstance(self.sampling, FixedSizeSampling):
            out["sampling"] = {"population": self.sampling.population, "sample": self.sampling.sample}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Charge:
        sampling_data = data.get("sampling")
        sampling: Sampling | None = None
        if sampling_data is not None:
            if "poisson" in sampling_data:
                sampling = PoissonSampling(rate=float(sampling_data["poisson"]))
            else:
                sampling = FixedSizeSampling(
                    population=int(sampling_data["population"]), sample=int(sampling_data["sample"])
                )
        return cls(
            noise_multiplier=data.get("noise_multiplier"),
            rho=data.get("rho"),
            sampling=sampling,
            count=int(data.get("count", 1)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PrivacyLedger:
    """Charges composed at ``delta`` by the ``method`` accountant; immutable, each charge gives a new ledger."""

    delta: float
    method: Method = "rdp"
    charges: tuple[Charge, ...] = ()

    def __post_init__(self) -> None:
        check("delta", self.delta, _DELTA)
        check("method", self.method, Options(METHODS))

    def plus(self, charge: Charge) -> PrivacyLedger:
        """This ledger with ``charge`` added, merged into an equal charge already held."""
        charges = list(self.charges)
        for index, held in enumerate(charges):
            if held.key() == charge.key():
                charges[index] = replace(held, count=held.count + charge.count)
                return replace(self, charges=tuple(charges))
        return replace(self, charges=(*charges, charge))

    def epsilon(self) -> float:
        """ε at ``delta`` spent by every charge so far; 0 for an empty ledger."""
        return epsilon_of(self.charges, delta=self.delta, method=self.method)

    def epsilon_after(self, charge: Charge) -> float:
        """ε the ledger would show if ``charge`` were added: what a budget check asks before releasing."""
        return self.plus(charge).epsilon()

    def to_json(self) -> dict[str, Any]:
        return {"delta": self.delta, "method": self.method, "charges": [c.to_json() for c in self.charges]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PrivacyLedger:
        return cls(
            delta=float(data["delta"]),
            method=data.get("method", "rdp"),
            charges=tuple(Charge.from_json(c) for c in data.get("charges", ())),
        )


def epsilon_of(charges: Sequence[Charge], *, delta: float, method: Method) -> float:
    """ε at ``delta`` of ``charges`` composed, by the RDP or PLD accountant of ``dp-accounting``.

    Under RDP, composition adds the charges' Rényi curves, so each distinct charge's curve is
    computed once per process (:func:`_rdp_curve`) and scaled by its count; ε then comes from
    ``dp-accounting``'s own conversion. A run asks for ε every round, and a curve under fixed-size
    sampling takes most of a second, so this is the difference between paying that once and every
    round. It is the same arithmetic ``RdpAccountant`` does (the tests hold the two to 1e-9).
    """
    if not charges:
        return 0.0
    from dp_accounting import rdp

    accountant = _accountant(charges, method)
    if isinstance(accountant, rdp.RdpAccountant):
        relation = accountant.neighboring_relation
        total = sum(charge.count * np.asarray(_rdp_curve(replace(charge, count=1), relation)) for charge in charges)
        epsilon, _ = rdp.rdp_privacy_accountant.compute_epsilon(accountant.orders, total, delta)
        return float(epsilon)
    for charge in charges:
        accountant.compose(charge.event())
    return float(accountant.get_epsilon(delta))


@functools.lru_cache(maxsize=1024)
def _rdp_curve(charge: Charge, relation: dp_accounting.NeighboringRelation) -> tuple[float, ...]:
    """The Rényi DP of one ``charge`` (count 1) at ``dp-accounting``'s default orders."""
    from dp_accounting import rdp

    accountant = rdp.RdpAccountant(neighboring_relation=relation)
    accountant.compose(charge.event())
    return tuple(float(value) for value in accountant.rdp)


def _accountant(charges: Sequence[Charge], method: Method) -> dp_accounting.PrivacyAccountant:
    """The accountant for ``charges``, or a PrivacyError naming what it cannot account for."""
    import dp_accounting
    from dp_accounting import pld, rdp

    fixed = [
        c for c in charges if isinstance(c.sampling, FixedSizeSampling) and c.sampling.sample < c.sampling.population
    ]
    poisson = [c for c in charges if isinstance(c.sampling, PoissonSampling) and c.sampling.rate < 1]
    if method == "pld":
        if fixed:
            raise PrivacyError(
                "the PLD accountant cannot account for fixed-size sampling without replacement; "
                "use accountant = 'rdp', or Poisson sampling"
            )
        for charge in charges:
            if charge.noise_multiplier is not None:
                check_pld_noise(method, charge.noise_multiplier)
        if any(c.rho is not None for c in charges):
            raise PrivacyError(
                "the PLD accountant cannot compose zCDP releases (distributed discrete Gaussian noise); "
                "use accountant = 'rdp'"
            )
        return pld.PLDAccountant()
    if fixed and poisson:
        raise PrivacyError(
            "one ledger cannot mix fixed-size sampling (replace-one neighbours) with Poisson sampling "
            "(add-or-remove-one neighbours); keep one sampler for the whole run"
        )
    relation = (
        dp_accounting.NeighboringRelation.REPLACE_ONE if fixed else dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
    )
    return rdp.RdpAccountant(neighboring_relation=relation)
