"""A differentially private run's budget: what each round is charged, and the refusals that enforce ε.

The engine asks three things of it. Before the first round (and on resume), whether the rounds
still to run fit the budget as planned; if not, the run does not start (:class:`PrivacyError`
naming the planned ε, the budget and the fix). Before every round, whether that round's charge
still fits; if not, the run stops before it (:class:`BudgetExhausted`) with the ledger as it
stood. After every round, the charge for what actually ran, which goes into the run's ledger.

A round's charge follows its mechanism (``fedlearn.strategies.privacy``):

* ``central``: the Gaussian mechanism with the run's noise multiplier ``z`` (with adaptive clipping,
  the combined ``z`` of the update and the count, Andrew et al. 2021, Theorem 1), amplified by the
  sampling that ran. Poisson sampling is the add-or-remove-one relation, where one node moves the
  clipped sum by at most ``C``: charged ``z``. Fixed-size sampling without replacement is the
  replace-one relation of the accountant (Wang, Balle, Kasiviswanathan 2019), where swapping one
  node for another moves the sum by up to ``2C``: charged ``z/2``, the noise over that sensitivity.
* ``local``: each node's own release, Gaussian with ``z``, unamplified: the coordinator knows who
  took part.
* ``distributed``: ρ-zCDP of the sum of the survivors' discrete Gaussian shares
  (:func:`~fedlearn.privacy.differential.distributed_rho`), unamplified.

A round in which no node was asked (an empty Poisson draw under ``local`` or ``distributed``)
releases nothing that depends on the data and is not charged; an empty draw under ``central``
releases noise and is charged like any other round.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

from fedlearn.core.errors import BudgetExhausted, ConfigError, PrivacyError
from fedlearn.core.params import ParamSet
from fedlearn.engine import seeding
from fedlearn.engine.secure_round import minimum_survivors
from fedlearn.privacy.accountant import FixedSizeSampling
from fedlearn.privacy.differential import (
    MAX_TAU_SHARE,
    DifferentialPrivacy,
    distributed_rho,
    distributed_tau_share,
)
from fedlearn.privacy.graph import MIN_NODES
from fedlearn.privacy.ledger import Charge, PrivacyLedger
from fedlearn.privacy.noise import NoiseSource, SeededNoise, SystemNoise
from fedlearn.strategies import privacy
from fedlearn.strategies.privacy import AccountedSampler, PrivateRound
from fedlearn.strategies.strategy import Strategy

NoiseKind = Literal["seeded", "system"]
NOISE_KINDS: tuple[NoiseKind, ...] = ("seeded", "system")
_REMEMBERED = 4
"""Ledgers whose ε a budget remembers: composing a run's events (above all fixed-size sampling's) takes a while."""


class PrivacyBudget:
    """The budget of one run of a strategy with differential privacy; holds no state between calls."""

    def __init__(self, strategy: Strategy, *, seed: int, min_replies: int, noise: NoiseKind) -> None:
        dp = strategy.differential_privacy
        if dp is None:
            raise ConfigError("a privacy budget needs a strategy with `differential_privacy`; got none")
        if noise not in NOISE_KINDS:
            raise ConfigError(f"`dp_noise` must be one of {', '.join(NOISE_KINDS)}; got {noise!r}")
        assert isinstance(strategy.sampler, AccountedSampler)  # Strategy refuses any other under DP
        self.dp: DifferentialPrivacy = dp
        self._strategy = strategy
        self._sampler: AccountedSampler = strategy.sampler
        self._seed = seed
        self._min_replies = min_replies
        self._noise = noise
        self._epsilons: dict[PrivacyLedger, float] = {}

    def epsilon(self, ledger: PrivacyLedger) -> float:
        """``ledger.epsilon()``, remembered for a few ledgers: a round's check prices the ledger it then records."""
        if ledger not in self._epsilons:
            if len(self._epsilons) >= _REMEMBERED:
                del self._epsilons[next(iter(self._epsilons))]
            self._epsilons[ledger] = ledger.epsilon()
        return self._epsilons[ledger]

    def ledger(self, existing: PrivacyLedger | None) -> PrivacyLedger:
        """The run's ledger: ``existing`` (a resumed run's), or an empty one at the strategy's δ and accountant."""
        if existing is None:
            return PrivacyLedger(delta=self.dp.delta, method=self.dp.accountant)
        if (existing.delta, existing.method) != (self.dp.delta, self.dp.accountant):
            raise ConfigError(
                f"the run's ledger is kept at δ = {existing.delta:g} by the {existing.method!r} accountant, but the "
                f"strategy asks δ = {self.dp.delta:g} and {self.dp.accountant!r}; resume with the run's own settings"
            )
        return existing

    def noise_source(self, number: int) -> NoiseSource:
        """Round ``number``'s noise: seeded from the run seed in simulation, from the OS otherwise."""
        if self._noise == "seeded":
            return SeededNoise(seeding.round_rng(self._seed, number, seeding.DP_NOISE))
        return SystemNoise()

    def private_round(self, number: int, num_available: int, num_sampled: int, params: ParamSet) -> PrivateRound:
        """What round ``number``'s private mean needs: its fixed denominator, its noise, the encoding's rounding."""
        settings = self._strategy.secure_aggregation
        rounding = 0.0
        if settings is not None and num_sampled >= MIN_NODES:
            rounding = math.sqrt(params.num_values) * 2.0 ** -settings.encoding(num_sampled).fraction_bits
        return PrivateRound(
            expected_nodes=self._sampler.expected_nodes(num_available),
            noise=self.noise_source(number),
            rounding=rounding,
        )

    def minimum_survivors(self, num_sampled: int) -> int:
        """The fewest nodes whose update a round over ``num_sampled`` nodes can hold."""
        settings = self._strategy.secure_aggregation
        if settings is None or num_sampled == 0:
            return max(num_sampled, 1)
        return minimum_survivors(settings, num_sampled, min_replies=self._min_replies)

    def charge(
        self, *, num_available: int, num_sampled: int, survivors: int, params: ParamSet, state: ParamSet
    ) -> Charge | None:
        """The charge of a round over ``num_sampled`` of ``num_available`` nodes with ``survivors`` summed."""
        dp = self.dp
        if dp.mechanism == "central":
            sampling = self._sampler.accounting(num_available)
            if isinstance(sampling, FixedSizeSampling):
                return Charge(noise_multiplier=dp.noise_multiplier / 2, sampling=sampling)
            if sampling.rate == 1:
                return Charge(noise_multiplier=dp.noise_multiplier)
            return Charge(noise_multiplier=dp.noise_multiplier, sampling=sampling)
        if num_sampled == 0 or survivors == 0:
            return None
        if dp.mechanism == "local":
            return Charge(noise_multiplier=dp.noise_multiplier)
        return Charge(rho=self._rho(distributed_rho, num_sampled, survivors, params, state))

    def worst_charge(self, *, num_available: int, num_sampled: int, params: ParamSet, state: ParamSet) -> Charge | None:
        """The most a round over ``num_sampled`` nodes can be charged: as few survivors as it accepts."""
        return self.charge(
            num_available=num_available,
            num_sampled=num_sampled,
            survivors=self.minimum_survivors(num_sampled),
            params=params,
            state=state,
        )

    def check_plan(
        self, ledger: PrivacyLedger, *, rounds: int, num_available: int, params: ParamSet, state: ParamSet
    ) -> None:
        """Refuse to start ``rounds`` more rounds whose planned charges would take ``ledger`` past the budget."""
        if rounds == 0:
            return
        planned_nodes = max(MIN_NODES, math.ceil(self._sampler.expected_nodes(num_available)))
        if self.dp.mechanism == "distributed":
            self._check_tau(planned_nodes, params, state)
            self._check_headroom(planned_nodes, state)
        charge = self.worst_charge(num_available=num_available, num_sampled=planned_nodes, params=params, state=state)
        if charge is None or math.isinf(self.dp.epsilon):
            return
        planned = self.epsilon(ledger.plus(replace(charge, count=rounds)))
        if planned > self.dp.epsilon:
            spent = self.epsilon(ledger)
            already = f" (ε = {spent:.4g} is already spent)" if spent > 0 else ""
            raise PrivacyError(
                f"the run's {rounds} planned round(s) would spend ε = {planned:.4g} at δ = {self.dp.delta:g}{already}, "
                f"over the budget `epsilon` = {self.dp.epsilon:g}; raise `noise_multiplier`, run fewer rounds or "
                "sample fewer nodes per round (a lower sampling rate)"
            )

    def check_round(self, ledger: PrivacyLedger, charge: Charge | None, *, number: int, state: object) -> None:
        """Stop before round ``number`` if its charge would take ``ledger`` past the budget."""
        if charge is None or math.isinf(self.dp.epsilon):
            return
        after = self.epsilon(ledger.plus(charge))
        if after > self.dp.epsilon:
            raise BudgetExhausted(
                f"round {number} would take ε from {self.epsilon(ledger):.4g} to {after:.4g} at δ = {self.dp.delta:g}, "
                f"over the budget `epsilon` = {self.dp.epsilon:g}; the run stops after round {number - 1} with its "
                "model and ledger intact (a larger budget, more noise or a lower sampling rate buys more rounds)",
                state=state,
            )

    def _rho(
        self, bound: Callable[..., float], num_sampled: int, survivors: int, params: ParamSet, state: ParamSet
    ) -> float:
        """``bound`` (:func:`distributed_rho` or its τ share) of a round over ``num_sampled``, ``survivors`` summed."""
        settings = self._strategy.secure_aggregation
        assert settings is not None  # Strategy refuses distributed DP without it
        clip = privacy.current_clip(self.dp, state.select(privacy.DP_PREFIX))
        noise = privacy.node_noise_stddev(self.dp, clip, self.minimum_survivors(num_sampled))
        assert noise is not None
        return bound(
            clip=clip,
            noise_stddev=noise,
            dimension=params.num_values,
            fraction_bits=settings.encoding(num_sampled).fraction_bits,
            nodes=survivors,
        )

    def _check_headroom(self, num_sampled: int, state: ParamSet) -> None:
        """Refuse a secure sum too narrow for the nodes' noise: a sum that wraps around its modulus is garbage.

        The encoding leaves room for ``n`` updates of weight ``max_weight``; under DP each weighs 1, and
        the noise in the sum (standard deviation at most ``z·C·sqrt(n/t)``) must fit in what is left,
        with ten standard deviations to spare.
        """
        settings = self._strategy.secure_aggregation
        assert settings is not None
        clip = privacy.current_clip(self.dp, state.select(privacy.DP_PREFIX))
        noise = privacy.node_noise_stddev(self.dp, clip, self.minimum_survivors(num_sampled))
        assert noise is not None
        room = num_sampled * settings.clip * (settings.max_weight - 1)
        needed = 10 * noise * math.sqrt(num_sampled)
        if needed > room:
            raise ConfigError(
                f"the secure sum has no room for distributed DP's noise: ten standard deviations of it ({needed:.3g}) "
                f"exceed the room the encoding leaves ({room:.3g}); raise [privacy.secure_aggregation] `max_weight` "
                "(every node weighs 1 under DP, so its room goes to the noise)"
            )

    def _check_tau(self, num_sampled: int, params: ParamSet, state: ParamSet) -> None:
        """Refuse distributed noise too coarse for the integer grid: the bound's τ terms would dominate."""
        share = self._rho(distributed_tau_share, num_sampled, self.minimum_survivors(num_sampled), params, state)
        if share > MAX_TAU_SHARE:
            raise ConfigError(
                f"distributed DP's discrete noise is too coarse for the encoding: its correction terms add "
                f"{share:.1%} to ρ (at most {MAX_TAU_SHARE:.0%} allowed); raise `noise_multiplier` or the secure "
                "aggregation's `fraction_bits`"
            )
