"""How much privacy a run of the Gaussian mechanism spends: ε at a given δ, and the noise for a target.

Differential privacy's budget is only as good as its accounting, so it is delegated to Google's
``dp-accounting``, with both of its accountants: RDP (Rényi DP, Mironov 2017; conservative) and
PLD (privacy loss distributions; tighter). Each round is one application of the Gaussian
mechanism (noise ``σ·C`` on a sum of updates clipped to norm ``C``) to the nodes that round
sampled, so the run is that event composed ``rounds`` times.

The accountant must be told how nodes were really sampled. :class:`PoissonSampling` (each node
independently with probability ``q``) is what the amplification bounds assume and what both
accountants support; :class:`FixedSizeSampling` (``m`` of ``n`` without replacement) is supported
by RDP only, and a combination an accountant cannot bound is refused rather than approximated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from fedlearn.core.checks import COUNT, POSITIVE, Interval, Options, check, check_fields
from fedlearn.core.errors import ConfigError, PrivacyError

if TYPE_CHECKING:  # dp-accounting takes most of a second to import; only accounting pays for it
    import dp_accounting

Method = Literal["rdp", "pld"]
METHODS: tuple[Method, ...] = ("rdp", "pld")
_AT_LEAST_ONE = Interval(1, math.inf, integer=True)
_PROBABILITY = Interval(0, 1, closed="right")
_DELTA = Interval(0, 1, closed="neither")
PLD_MIN_NOISE = 0.5
"""The least noise multiplier the PLD accountant is asked about. Its privacy-loss grid grows as the
noise shrinks: at 0.3 a hundred rounds take 2.8 GB and 30 s, at 1e-3 one calibration step asked for
38 GB. Below 0.5, ε is in the tens or hundreds anyway, where RDP's looser bound costs nothing."""
_SEARCH_FROM = {"rdp": 1e-3, "pld": PLD_MIN_NOISE}
"""Where the calibrator's search starts: RDP from 1e-3, since dp-accounting's fixed-size sampling
bound divides by the noise and fails at the default lower end, 0; PLD from :data:`PLD_MIN_NOISE`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PoissonSampling:
    """Each node takes part in a round independently with probability ``rate``."""

    rate: float

    def __post_init__(self) -> None:
        check_fields(self, {"rate": _PROBABILITY})

    def event(self, mechanism: dp_accounting.DpEvent) -> dp_accounting.DpEvent:
        import dp_accounting

        return mechanism if self.rate == 1 else dp_accounting.PoissonSampledDpEvent(self.rate, mechanism)


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedSizeSampling:
    """``sample`` of ``population`` nodes each round, drawn without replacement."""

    population: int
    sample: int

    def __post_init__(self) -> None:
        check_fields(self, {"population": _AT_LEAST_ONE, "sample": _AT_LEAST_ONE})
        if self.sample > self.population:
            raise ConfigError(f"`sample` must be at most `population` ({self.population}); got {self.sample}")

    def event(self, mechanism: dp_accounting.DpEvent) -> dp_accounting.DpEvent:
        import dp_accounting

        if self.sample == self.population:
            return mechanism
        return dp_accounting.SampledWithoutReplacementDpEvent(self.population, self.sample, mechanism)


Sampling = PoissonSampling | FixedSizeSampling


@dataclass(frozen=True, slots=True, kw_only=True)
class Accountant:
    """ε spent at ``delta`` by ``rounds`` Gaussian rounds with a noise multiplier, under a sampling.

    ``method`` picks the accountant: ``"pld"`` gives the tighter ε, ``"rdp"`` the classic bound
    and the only one that handles fixed-size sampling without replacement.
    """

    delta: float
    method: Method = "rdp"

    def __post_init__(self) -> None:
        check("delta", self.delta, _DELTA)
        check("method", self.method, Options(METHODS))

    def epsilon(self, *, noise_multiplier: float, sampling: Sampling, rounds: int) -> float:
        """The ε that ``rounds`` rounds at ``noise_multiplier`` spend; 0 rounds spend nothing."""
        check("noise_multiplier", noise_multiplier, POSITIVE)
        check("rounds", rounds, COUNT)
        if rounds == 0:
            return 0.0
        check_pld_noise(self.method, noise_multiplier)
        accountant = self._fresh(sampling)
        accountant.compose(_run_event(noise_multiplier, sampling, rounds))
        return float(accountant.get_epsilon(self.delta))

    def calibrate(self, *, target_epsilon: float, sampling: Sampling, rounds: int) -> float:
        """The smallest noise multiplier whose ``rounds`` rounds spend at most ``target_epsilon``."""
        check("target_epsilon", target_epsilon, POSITIVE)
        check("rounds", rounds, _AT_LEAST_ONE)
        from dp_accounting.mechanism_calibration import (
            LowerEndpointAndGuess,
            NoBracketIntervalFoundError,
            calibrate_dp_mechanism,
        )

        self._fresh(sampling)  # refuse an unsupported combination before searching
        try:
            noise = calibrate_dp_mechanism(
                lambda: self._fresh(sampling),
                lambda sigma: _run_event(sigma, sampling, rounds),
                target_epsilon,
                self.delta,
                bracket_interval=LowerEndpointAndGuess(lower_endpoint=_SEARCH_FROM[self.method], initial_guess=1.0),
            )
        except NoBracketIntervalFoundError as exc:
            if (
                self.method == "pld"
                and self.epsilon(noise_multiplier=PLD_MIN_NOISE, sampling=sampling, rounds=rounds) <= target_epsilon
            ):
                return PLD_MIN_NOISE  # the least noise PLD accounts for already fits the target
            raise PrivacyError(
                f"no noise multiplier reaches ε = {target_epsilon:g} at δ = {self.delta:g} in {rounds} rounds; "
                "raise `target_epsilon`, lower the sampling rate or run fewer rounds"
            ) from exc
        return float(noise)

    def _fresh(self, sampling: Sampling) -> dp_accounting.PrivacyAccountant:
        import dp_accounting
        from dp_accounting import pld, rdp

        if self.method == "pld":
            if isinstance(sampling, FixedSizeSampling) and sampling.sample < sampling.population:
                raise PrivacyError(
                    "the PLD accountant cannot account for fixed-size sampling without replacement; "
                    "use method = 'rdp', or Poisson sampling"
                )
            return pld.PLDAccountant()
        relation = (
            dp_accounting.NeighboringRelation.REPLACE_ONE
            if isinstance(sampling, FixedSizeSampling)
            else dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
        )
        return rdp.RdpAccountant(neighboring_relation=relation)


def check_pld_noise(method: Method, noise_multiplier: float) -> None:
    """Refuse to ask the PLD accountant about a noise multiplier below :data:`PLD_MIN_NOISE`."""
    if method == "pld" and noise_multiplier < PLD_MIN_NOISE:
        raise PrivacyError(
            f"the PLD accountant needs a noise multiplier of at least {PLD_MIN_NOISE:g} (its grid would take "
            f"gigabytes); got {noise_multiplier:g}; use accountant = 'rdp', or more noise"
        )


def _run_event(noise_multiplier: float, sampling: Sampling, rounds: int) -> dp_accounting.DpEvent:
    import dp_accounting

    round_event = sampling.event(dp_accounting.GaussianDpEvent(noise_multiplier))
    return dp_accounting.SelfComposedDpEvent(round_event, rounds)
