"""Robust statistics over the whole pool of updates: Bulyan and the geometric median.

Both need every update at once (``streaming = False``): they hold all client models,
O(n x model), as received (replies are read-only, so no copies), and work through the model in
column blocks so their temporaries stay small. Like the other robust reducers they drop replies
of weight 0. Bulyan ignores the other weights, because an example count is self-reported and a
robust statistic must not let a node buy influence by claiming more; the geometric median uses
them, as RFA does, so cap what a node may claim (``[engine] max_examples_per_reply``, declared
row counts) when the weights matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fedlearn.core.checks import POSITIVE, check_int, check_real
from fedlearn.core.errors import QuorumError
from fedlearn.core.params import ParamSet
from fedlearn.strategies.accumulators import Pool, Pooling, to_params
from fedlearn.strategies.base import Reducer
from fedlearn.strategies.reducers import krum_ranking, squared_distances


@dataclass(frozen=True, slots=True, kw_only=True)
class Bulyan(Pooling, Reducer[Pool]):
    """Bulyan over Krum, exactly as El Mhamdi, Guerraoui and Rouault define it.

    "The Hidden Vulnerability of Distributed Learning in Byzantium", ICML 2018. Krum alone lets
    an attacker hide a large change in a single coordinate among small distances; Bulyan bounds
    every coordinate as well:

    1. selection: apply Krum (:func:`~fedlearn.strategies.reducers.krum_ranking`) to the
       remaining updates, move the one it picks to the selection, and repeat until the
       selection holds ``theta = n - 2f`` updates. Each Krum round scores within the remaining
       set, over its ``|remaining| - f - 2`` nearest others. In the last rounds, with fewer
       than ``f + 3`` left, that count is not positive and Krum is undefined; there the
       nearest other decides rather than chance. Equal scores are broken by content, so reply
       order cannot matter;
    2. aggregation: for each coordinate, average the ``beta = theta - 2f = n - 4f`` selected
       values closest to that coordinate's median over the selection.

    The guarantee needs ``n >= 4f + 3`` updates of weight > 0, so fewer is a
    :class:`QuorumError` naming both numbers, not a silent downgrade to a weaker rule.

    Memory: every update, O(n x model), plus the n x n distance matrix; time O(n^2 x model) for
    the distances (computed once and reused by every Krum round) and O(n log n x model) for the
    coordinate-wise step.
    """

    num_byzantine: int

    streaming: ClassVar[bool] = False
    needs_each_update: ClassVar[str] = "it selects updates by their distances to one another"

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_byzantine", check_int("num_byzantine", self.num_byzantine, low=0))

    @property
    def min_replies(self) -> int:
        """``4f + 3``: the fewest updates of weight > 0 for which Bulyan's guarantee holds."""
        return 4 * self.num_byzantine + 3

    def result(self, acc: Pool) -> ParamSet:
        f = self.num_byzantine
        count = len(acc.models)
        if count < self.min_replies:
            raise QuorumError(
                f"bulyan with num_byzantine={f} needs at least {self.min_replies} replies of weight > 0 "
                f"(n >= 4f + 3); got {count}"
            )
        distances = squared_distances(acc)
        remaining = list(range(count))
        selected: list[int] = []
        while len(selected) < count - 2 * f:
            chosen = krum_ranking(acc, distances, remaining, f)[0]
            remaining.remove(chosen)
            selected.append(chosen)
        beta = count - 4 * f
        return acc.columnwise(lambda stack: _mean_closest_to_median(stack, beta), indices=sorted(selected))


def _mean_closest_to_median(stack: np.ndarray, beta: int) -> np.ndarray:
    """Each column's mean over its ``beta`` values closest to the column's median.

    The values are sorted first, so the choice among equally close values (the smaller one
    wins) and the order of the sum depend on the values alone, never on the order of the rows.
    """
    values = np.sort(stack, axis=0)
    median = np.median(values, axis=0)
    nearest = np.argsort(np.abs(values - median), axis=0, kind="stable")[:beta]
    return np.take_along_axis(values, nearest, axis=0).mean(axis=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class GeometricMedian(Pooling, Reducer[Pool]):
    """The weighted geometric median by smoothed Weiszfeld iterations: RFA.

    Pillutla, Kakade and Harchaoui, "Robust Aggregation for Federated Learning", IEEE TSP 2022.
    The geometric median minimises ``sum_i a_i ||v - u_i||`` over ``v``; unlike the mean it
    moves only boundedly however far a minority of the weight is dragged, and unlike the
    coordinate-wise median it is a property of whole updates. With ``a_i`` the weights
    normalised to sum to 1, starting from the weighted mean, each iteration sets::

        b_i = a_i / max(nu, ||v - u_i||);   v = sum_i b_i u_i / sum_i b_i

    ``nu`` smooths the objective where ``v`` meets an update (plain Weiszfeld divides by zero
    there). Iterations stop after ``max_iterations`` or once the objective improves by at most
    ``tolerance`` times its value. Pillutla et al. report that a few iterations suffice.

    The pool is put in an order fixed by content before iterating, so the result is the same
    bits whatever order the replies came in.

    Memory: every update, O(n x model), plus the float64 estimate, O(model). Time: two passes
    over the pool per iteration, O(iterations x n x model).
    """

    nu: float = 1e-6
    max_iterations: int = 100
    tolerance: float = 1e-6

    streaming: ClassVar[bool] = False
    needs_each_update: ClassVar[str] = "it weighs each update by its distance to the current estimate"

    def __post_init__(self) -> None:
        object.__setattr__(self, "nu", check_real("nu", self.nu, POSITIVE))
        object.__setattr__(self, "max_iterations", check_int("max_iterations", self.max_iterations, low=1))
        object.__setattr__(self, "tolerance", check_real("tolerance", self.tolerance, POSITIVE))

    def result(self, acc: Pool) -> ParamSet:
        acc.require(1, "geometric_median")
        acc.sort_by_content()
        alphas = np.asarray(acc.weights, dtype=np.float64)
        alphas /= alphas.sum()
        estimate = acc.combination(alphas)
        distances = acc.distances(estimate)
        objective = float(np.sum(alphas * distances))
        for _ in range(self.max_iterations):
            betas = alphas / np.maximum(self.nu, distances)
            estimate = acc.combination(betas / betas.sum())
            distances = acc.distances(estimate)
            previous, objective = objective, float(np.sum(alphas * distances))
            if abs(previous - objective) <= self.tolerance * objective:
                break
        return to_params(acc.spec, estimate)


def bulyan(num_byzantine: int) -> Bulyan:
    """Bulyan tolerating ``num_byzantine`` bad nodes; needs ``4 * num_byzantine + 3`` replies. Not streaming."""
    return Bulyan(num_byzantine=num_byzantine)


def geometric_median(nu: float = 1e-6, max_iterations: int = 100, tolerance: float = 1e-6) -> GeometricMedian:
    """The weighted geometric median (RFA) by smoothed Weiszfeld iterations. Not streaming."""
    return GeometricMedian(nu=nu, max_iterations=max_iterations, tolerance=tolerance)
