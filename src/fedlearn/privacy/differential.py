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

With ``adaptive`` clipping, ``clip`` is the initial norm and tracks a quantile of the update norms
(Andrew et al. 2021); the noised count of clipped updates is part of the accounting
(:meth:`DifferentialPrivacy.update_noise_multiplier`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

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
        check_fields(self, {"noise_multiplier": POSITIVE, "epsilon": POSITIVE, "clip": POSITIVE, "delta": _DELTA})
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
