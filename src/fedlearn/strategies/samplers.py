"""Samplers: which of the available nodes take part in a round.

A sampler draws only from the ``numpy.random.Generator`` it is handed, which the engine derives
from the run seed and the round number. The same seed and the same list of available nodes
therefore give the same nodes in simulation and in deployment, and a resumed run samples what the
uninterrupted run would have.

Under differential privacy the accountant must be told how nodes were really sampled, so a
sampler also says which accounting :data:`~fedlearn.privacy.accountant.Sampling` it is
(``accounting``) and how many nodes a round expects (``expected_nodes``), which is the fixed
denominator of the private mean. :class:`PoissonSampler` is the sampler the amplification bounds
assume; :class:`FractionSampler` is fixed-size sampling without replacement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedlearn.core.checks import Interval, check_int, check_real
from fedlearn.core.errors import QuorumError
from fedlearn.privacy.accountant import FixedSizeSampling, PoissonSampling, Sampling

_RATE = Interval(0, 1, closed="right")


@dataclass(frozen=True, slots=True, kw_only=True)
class FractionSampler:
    """Pick ``ceil(fraction * available)`` nodes uniformly without replacement.

    The count is clamped to ``[min_nodes, max_nodes]`` and to the number available. ``min_nodes``
    is a quorum, not a wish: with fewer nodes available the round cannot run, and
    :class:`QuorumError` says so rather than training on a handful of nodes nobody asked for.
    """

    fraction: float = 1.0
    min_nodes: int = 1
    max_nodes: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "fraction", check_real("fraction", self.fraction, Interval(0, 1, closed="right")))
        object.__setattr__(self, "min_nodes", check_int("min_nodes", self.min_nodes, low=1))
        if self.max_nodes is not None:
            object.__setattr__(self, "max_nodes", check_int("max_nodes", self.max_nodes, low=self.min_nodes))

    def num_nodes(self, num_available: int) -> int:
        """How many nodes a round samples when ``num_available`` are available."""
        if num_available < self.min_nodes:
            raise QuorumError(
                f"a round needs at least {self.min_nodes} node(s) (`min_nodes`) but only {num_available} "
                "are available; start more nodes or lower `min_nodes`"
            )
        # Rounded first so that 0.1 * 30 (= 3.0000000000000004 in binary) asks for 3 nodes, not 4.
        wanted = math.ceil(round(self.fraction * num_available, 9))
        wanted = max(wanted, self.min_nodes)
        if self.max_nodes is not None:
            wanted = min(wanted, self.max_nodes)
        return min(wanted, num_available)

    def sample(self, available: Sequence[str], rng: np.random.Generator) -> list[str]:
        """The chosen node ids, in the order they appear in ``available``."""
        count = self.num_nodes(len(available))
        if count == len(available):
            return list(available)
        chosen = np.sort(rng.choice(len(available), size=count, replace=False))
        return [available[i] for i in chosen]

    def expected_nodes(self, num_available: int) -> float:
        """The nodes a round takes: fixed, given how many are available."""
        return float(self.num_nodes(num_available))

    def accounting(self, num_available: int) -> Sampling:
        """Fixed-size sampling of ``num_nodes`` of ``num_available``, or everyone every round.

        A sampler that always takes every node (``fraction = 1`` and no ``max_nodes``) is
        described as Poisson sampling at rate 1, i.e. no sampling: the add-or-remove-one relation
        that every accountant handles, with sensitivity ``clip``. Fixed-size sampling below the
        population is the replace-one relation (see ``fedlearn.strategies.privacy``).
        """
        if self.fraction == 1 and self.max_nodes is None:
            self.num_nodes(num_available)  # the quorum still applies
            return PoissonSampling(rate=1.0)
        return FixedSizeSampling(population=num_available, sample=self.num_nodes(num_available))


@dataclass(frozen=True, slots=True, kw_only=True)
class PoissonSampler:
    """Each available node takes part independently with probability ``rate`` (Poisson sampling).

    This is the sampling that DP-FedAvg's privacy amplification assumes (McMahan et al. 2018), so
    a private run should use it. A round may sample no node at all; the engine then still runs
    the round's mechanism (see ``fedlearn.strategies.privacy``) rather than fail, and a quorum
    is not a Poisson sampler's business: it would make the sample depend on the draw's size.
    One uniform is drawn per available node, in the order given, so the same generator and the
    same list give the same sample.
    """

    rate: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", check_real("rate", self.rate, _RATE))

    def sample(self, available: Sequence[str], rng: np.random.Generator) -> list[str]:
        """The chosen node ids, in the order they appear in ``available``; possibly none."""
        draws = rng.random(len(available))
        return [node for node, draw in zip(available, draws, strict=True) if draw < self.rate]

    def expected_nodes(self, num_available: int) -> float:
        """``rate * num_available``: the expected size of a draw, the private mean's fixed denominator."""
        return self.rate * num_available

    def accounting(self, num_available: int) -> Sampling:
        return PoissonSampling(rate=self.rate)


def fraction_sampler(fraction: float = 1.0, min_nodes: int = 1, max_nodes: int | None = None) -> FractionSampler:
    """A :class:`FractionSampler`; ``fraction=1.0`` (the default) takes every available node."""
    return FractionSampler(fraction=fraction, min_nodes=min_nodes, max_nodes=max_nodes)


def poisson_sampler(rate: float) -> PoissonSampler:
    """A :class:`PoissonSampler` including each node with probability ``rate``."""
    return PoissonSampler(rate=rate)
