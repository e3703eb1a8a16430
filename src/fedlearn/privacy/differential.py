"""A run's differential privacy, as one strategy piece: where noise is added, how much, and the budget.

Three mechanisms, by who adds the noise (docs/privacy.md weighs them):

* ``"central"``: each node's update is clipped to L2 norm ``clip``, the clipped updates are
  summed, and Gaussian noise of standard deviation ``noise_multiplier * clip`` is added to the
  sum (McMahan et al. 2018, DP-FedAvg). Without secure aggregation the coordinator clips; under
  secure aggregation the nodes clip and the coordinator noises the secure sum, so it must be
  trusted to add the noise, though it never sees an update.
* ``"distributed"``: under secure aggregation each node adds its share of discrete Gaussian noise
  to its encoded update, so nobody, the coordinator included, ever sees a noiseless sum (Kairouz
  et al. 2021). Accounted as zCDP.
* ``"local"``: each node clips its update and adds the whole noise itself, so its update is
  private even from a coordinator that sees it alone; it costs ``sqrt(nodes)`` times the noise
  of the central mechanism on the mean.

Distributed DP is accounted by :func:`distributed_rho`, the zCDP bound of Kairouz, Liu and Steinke
(2021) on a sum of discrete Gaussians, taken in the integer domain that secure aggregation sums.

With ``adaptive`` clipping, ``clip`` is the initial norm and tracks a quantile of the update norms
(Andrew et al. 2021); the noised count of clipped updates is part of the accounting
(:meth:`DifferentialPrivacy.update_noise_multiplier`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from fedlearn.core.checks import POSITIVE, Interval, Options, check, check_fields
from fedlearn.core.errors import ConfigError
from fedlearn.privacy.accountant import METHODS, Method

Mechanism = Literal["central", "local", "distributed"]
MECHANISMS: tuple[Mechanism, ...] = ("central", "local", "distributed")
_DELTA = Interval(0, 1, closed="neither")
_QUANTILE = Interval(0, 1, closed="neither")


@dataclass(frozen=True, slots=True, kw_only=True)
class AdaptiveClipping:
    """The clipping norm follows the ``target_quantile`` of update norms (Andrew et al. 2021).

    Each round ``clip <- clip * exp(-learning_rate * (b - target_quantile))``, where ``b`` is the
    share of updates that were not clipped, counted with Gaussian noise of standard deviation
    ``count_stddev`` (in counts of nodes); by default one twentieth of the expected number of
    nodes per round, the paper's choice.
    """

    target_quantile: float = 0.5
    learning_rate: float = 0.2
    count_stddev: float | None = None

    def __post_init__(self) -> None:
        check_fields(self, {"target_quantile": _QUANTILE, "learning_rate": POSITIVE})
        if self.count_stddev is not None:
            check("count_stddev", self.count_stddev, POSITIVE)

    def stddev(self, expected_nodes: float) -> float:
        """The clipped count's noise for rounds of about ``expected_nodes`` nodes."""
        return self.count_stddev if self.count_stddev is not None else expected_nodes / 20


@dataclass(frozen=True, slots=True, kw_only=True)
class DifferentialPrivacy:
    """Node-level differential privacy for a training run, and the budget it must stay within.

    ``noise_multiplier`` is the ratio of the noise's standard deviation to the clipping norm for
    the whole release (with adaptive clipping, for the update and the count together).
    ``epsilon`` is the budget at ``delta``: the engine refuses a run whose planned rounds would
    exceed it, and stops before any round that would; ``math.inf`` reports ε without a limit.
    """

    noise_multiplier: float
    epsilon: float
    clip: float = 1.0
    delta: float = 1e-5
    mechanism: Mechanism = "central"
    accountant: Method = "rdp"
    adaptive: AdaptiveClipping | None = None

    def __post_init__(self) -> None:
        check_fields(self, {"noise_multiplier": POSITIVE, "clip": POSITIVE, "delta": _DELTA})
        if self.epsilon != math.inf:  # an infinite budget reports ε without enforcing a limit
            check("epsilon", self.epsilon, POSITIVE)
        check("mechanism", self.mechanism, Options(MECHANISMS))
        check("accountant", self.accountant, Options(METHODS))
        if self.adaptive is not None and self.mechanism == "local":
            raise ConfigError(
                "adaptive clipping needs a noised count over many nodes; use it with 'central' or 'distributed'"
            )
        if self.mechanism == "distributed" and self.accountant != "rdp":
            raise ConfigError(
                "distributed DP is accounted as zCDP, which only the RDP accountant composes; use accountant = 'rdp'"
            )

    def update_noise_multiplier(self, expected_nodes: float) -> float:
        """The noise multiplier the update itself gets, once adaptive clipping's count has taken its share.

        Andrew et al. 2021 (Theorem 1): releasing the update with ``z_u`` and the count with
        ``sigma_b`` is as private as one Gaussian release with ``z`` where
        ``z^-2 = z_u^-2 + (2 sigma_b)^-2``; so ``z_u = (z^-2 - (2 sigma_b)^-2)^(-1/2)``.
        """
        if self.adaptive is None:
            return self.noise_multiplier
        count_share = (2 * self.adaptive.stddev(expected_nodes)) ** -2
        remaining = self.noise_multiplier**-2 - count_share
        if remaining <= 0:
            raise ConfigError(
                f"adaptive clipping's count noise ({self.adaptive.stddev(expected_nodes):g} nodes) leaves no budget "
                f"for the update at noise_multiplier {self.noise_multiplier:g}; raise `count_stddev` or the noise"
            )
        return math.sqrt(1 / remaining)


MAX_TAU_SHARE = 0.01
"""How much the discrete Gaussian's τ terms may add to the ρ of the continuous Gaussian they stand for:
beyond it the per-node noise is too coarse for the integer grid, and a run is refused rather than
accounted with a bound dominated by its correction terms."""


def distributed_rho(*, clip: float, noise_stddev: float, dimension: int, fraction_bits: int, nodes: int) -> float:
    """ρ (zCDP) of one distributed-DP round: ``nodes`` nodes each add discrete Gaussian noise to a clipped update.

    Kairouz, Liu and Steinke 2021 ("The Distributed Discrete Gaussian Mechanism for Federated
    Learning with Secure Aggregation", Theorem 1 and Proposition 14): the sum of ``n`` independent
    N_Z(0, σ²)^d vectors, σ >= 1/2, shifted by an integer vector of L2 norm Δ, is (ε²/2)-zCDP with

        ε = min( sqrt(Δ²/(nσ²) + 2τd),  Δ/(sqrt(n)σ) + τ·sqrt(d) ),
        τ = 10 · Σ_{k=1}^{n-1} exp(-2π²σ² · k/(k+1)).

    (Proposition 14's first bound is ``α/2 · Δ²/(nσ²) + τd`` in Rényi divergence of order α >= 1, which
    is at most ``α/2 · (Δ²/(nσ²) + 2τd)``: zCDP with the first ε above.)

    Everything is in the units secure aggregation sums: an update clipped to L2 norm ``clip`` is
    scaled by ``2^fraction_bits`` and rounded at random, which moves each of its ``dimension``
    coordinates by less than 1, so one node changes the sum by at most ``Δ = clip·2^f + sqrt(d)``;
    each node's noise has σ = ``noise_stddev·2^f`` (``noise_stddev`` in update units, what
    ``dp.noise_stddev`` tells the node). ``nodes`` are those whose noise is in the sum: the
    survivors of the round, never the sampled count.
    """
    check("clip", clip, POSITIVE)
    check("noise_stddev", noise_stddev, POSITIVE)
    check("dimension", dimension, Interval(1, math.inf, integer=True))
    check("fraction_bits", fraction_bits, Interval(0, 512, integer=True))
    check("nodes", nodes, Interval(1, math.inf, integer=True))
    scale = 2.0**fraction_bits
    sensitivity = clip * scale + math.sqrt(dimension)
    sigma = noise_stddev * scale
    if sigma < 0.5:
        raise ConfigError(
            f"distributed DP needs each node's discrete Gaussian noise to have σ >= 1/2 in integer units; got "
            f"{sigma:g} (dp.noise_stddev {noise_stddev:g} x 2^{fraction_bits}); raise the noise or `fraction_bits`"
        )
    tau = _tau(sigma, nodes)
    gaussian = sensitivity**2 / (nodes * sigma**2)
    epsilon = min(math.sqrt(gaussian + 2 * tau * dimension), math.sqrt(gaussian) + tau * math.sqrt(dimension))
    return epsilon**2 / 2


def distributed_tau_share(*, clip: float, noise_stddev: float, dimension: int, fraction_bits: int, nodes: int) -> float:
    """How much larger :func:`distributed_rho` is than the continuous Gaussian's ρ, ``Δ²/(2nσ²)``, minus 1."""
    rho = distributed_rho(
        clip=clip, noise_stddev=noise_stddev, dimension=dimension, fraction_bits=fraction_bits, nodes=nodes
    )
    scale = 2.0**fraction_bits
    gaussian = (clip * scale + math.sqrt(dimension)) ** 2 / (2 * nodes * (noise_stddev * scale) ** 2)
    return rho / gaussian - 1


def _tau(sigma: float, nodes: int) -> float:
    if nodes < 2:
        return 0.0
    k = np.arange(1, nodes, dtype=np.float64)
    return float(10 * np.exp(-2 * math.pi**2 * sigma**2 * k / (k + 1)).sum())
