"""Samplers: which of the available nodes take part in a round.

A sampler draws only from the ``numpy.random.Generator`` it is handed, which the engine derives
from the run seed and the round number. The same seed and the same list of available nodes
therefore give the same nodes in simulation and in deployment, and a resumed run samples what the
uninterrupted run would have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedlearn.core.checks import Interval, check_int, check_real
from fedlearn.core.errors import QuorumError


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


def fraction_sampler(fraction: float = 1.0, min_nodes: int = 1, max_nodes: int | None = None) -> FractionSampler:
    """A :class:`FractionSampler`; ``fraction=1.0`` (the default) takes every available node."""
    return FractionSampler(fraction=fraction, min_nodes=min_nodes, max_nodes=max_nodes)
