"""Reducers: many client models in, one update out.

A reducer is initialised with the global model and folds in each client's model; its result
is the combined update relative to the global model. Taking the models rather than their
differences lets each reducer subtract where it is cheapest: the means subtract block by block
inside their accumulation pass, and the robust reducers inside the blocks they stack, so no
reply ever costs a model-sized temporary (a round's memory and time both shrink by one pass).

The means stream: they keep a float64 running sum the size of the model and fold each update in
as it arrives, so memory stays O(model) however many nodes reply (the design's memory
invariant). Accumulating in float64 also makes the result independent of reply order to within
float64 rounding, far below float32 resolution.

The robust reducers (coordinate median, trimmed mean, Krum) need every update at once and say so
with ``streaming = False``: they hold all client models, O(nodes x model) (as received, since
they are read-only, so no copies). They work through the model in column blocks so their
temporaries stay small. They drop replies of weight 0 (a node that trained on nothing sent no
information) and otherwise ignore weights: an example count is self-reported, and a robust
statistic must not let a node buy influence by claiming more.

Both kinds build on ``strategies.accumulators``; the further defences (Bulyan, the geometric
median, centered clipping, norm bounding, bucketing, FLTrust) live in modules of their own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fedlearn.core.checks import Interval, check_int, check_real
from fedlearn.core.params import ParamSet
from fedlearn.strategies.accumulators import Pool, Pooling, RunningSum, check_weight
from fedlearn.strategies.base import Reducer


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightedMean(Reducer[RunningSum]):
    """The FedAvg average, sum(w * update) / sum(w), with weights = example counts; streams."""

    streaming: ClassVar[bool] = True

    def init(self, template: ParamSet) -> RunningSum:
        return RunningSum(template)

    def add(self, acc: RunningSum, model: ParamSet, weight: float) -> RunningSum:
        acc.add(model, check_weight(weight))
        return acc

    def result(self, acc: RunningSum) -> ParamSet:
        return acc.mean("weighted_mean")


@dataclass(frozen=True, slots=True, kw_only=True)
class UnweightedMean(Reducer[RunningSum]):
    """The plain average of the updates, each reply counting once whatever its weight; streams.

    SCAFFOLD's server step is this mean, and it suits nodes whose example counts are not
    comparable (or not to be trusted).
    """

    streaming: ClassVar[bool] = True

    def init(self, template: ParamSet) -> RunningSum:
        return RunningSum(template)

    def add(self, acc: RunningSum, model: ParamSet, weight: float) -> RunningSum:
        check_weight(weight)
        acc.add(model, 1.0)
        return acc

    def result(self, acc: RunningSum) -> ParamSet:
        return acc.mean("unweighted_mean")


@dataclass(frozen=True, slots=True, kw_only=True)
class CoordinateMedian(Pooling, Reducer[Pool]):
    """Each coordinate's median across updates (Yin et al. 2018). Holds every update."""

    streaming: ClassVar[bool] = False

    def result(self, acc: Pool) -> ParamSet:
        acc.require(1, "coordinate_median")
        return acc.columnwise(lambda stack: np.median(stack, axis=0))


@dataclass(frozen=True, slots=True, kw_only=True)
class TrimmedMean(Pooling, Reducer[Pool]):
    """Each coordinate's mean after dropping its ``floor(beta * n)`` largest and smallest values.

    Yin et al. 2018. ``beta < 0.5`` always leaves at least one value. Holds every update.
    """

    beta: float

    streaming: ClassVar[bool] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", check_real("beta", self.beta, Interval(0, 0.5, closed="left")))

    def result(self, acc: Pool) -> ParamSet:
        count = acc.require(1, "trimmed_mean")
        cut = math.floor(self.beta * count)
        return acc.columnwise(lambda stack: np.sort(stack, axis=0)[cut : count - cut].mean(axis=0))


@dataclass(frozen=True, slots=True, kw_only=True)
class Krum(Pooling, Reducer[Pool]):
    """(Multi-)Krum, Blanchard et al. 2017: keep the updates closest to their neighbours.

    Each update is scored by the summed squared distance to its ``n - f - 2`` nearest others; the
    ``multi`` best-scored updates are averaged (``multi=1`` is Krum itself). The guarantee needs
    ``n >= 2f + 3`` updates, so fewer is a :class:`QuorumError`, not a silent downgrade. Holds
    every update and costs O(n^2 x model).
    """

    num_byzantine: int
    multi: int = 1

    streaming: ClassVar[bool] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_byzantine", check_int("num_byzantine", self.num_byzantine, low=0))
        object.__setattr__(self, "multi", check_int("multi", self.multi, low=1))

    @property
    def min_replies(self) -> int:
        """The fewest updates of weight > 0 a round needs: ``2f + 3``, and at least ``multi + f``."""
        return max(2 * self.num_byzantine + 3, self.multi + self.num_byzantine)

    def result(self, acc: Pool) -> ParamSet:
        f = self.num_byzantine
        what = f"krum(num_byzantine={f}, multi={self.multi})"
        count = acc.require(self.min_replies, what)
        order = krum_ranking(acc, squared_distances(acc), range(count), f)
        chosen = RunningSum(acc.base)
        for i in order[: self.multi]:
            chosen.add(acc.models[i], 1.0)
        return chosen.mean(what)


def krum_ranking(pool: Pool, distances: np.ndarray, candidates: Sequence[int], num_byzantine: int) -> list[int]:
    """``candidates`` (indices into ``pool``) from the best Krum score to the worst, among themselves.

    A candidate's score is the summed squared distance to its ``len(candidates) - f - 2`` nearest
    fellow candidates, and to at least the nearest one: with fewer than ``f + 3`` candidates left
    (as in Bulyan's last selections) Krum's count is not positive and would score them all 0,
    letting chance pick. Equal scores are broken by content, never by arrival order, so reply
    order cannot matter.
    """
    index = np.asarray(candidates, dtype=np.intp)
    among = distances[np.ix_(index, index)]
    neighbours = max(len(index) - num_byzantine - 2, 1)
    scores = [float(np.sort(np.delete(row, k))[:neighbours].sum()) for k, row in enumerate(among)]
    tied = {s for s in scores if scores.count(s) > 1}
    order = sorted(
        range(len(index)), key=lambda k: (scores[k], pool.digest(int(index[k])) if scores[k] in tied else "")
    )
    return [int(index[k]) for k in order]


def squared_distances(pool: Pool) -> np.ndarray:
    """Pairwise squared L2 distances between the pooled updates, accumulated block by block.

    Uses ||a - b||^2 = |a|^2 + |b|^2 - 2 a.b (one matrix product per block) on blocks centred on
    their column means; centring leaves distances unchanged but removes the cancellation that
    the identity suffers when updates are large and close together.
    """
    count = len(pool.models)
    distances = np.zeros((count, count), dtype=np.float64)
    for name in pool.spec:
        for _, block in pool.blocks(name):
            block -= block.mean(axis=0)  # noqa: PLW2901 -- the block is a fresh scratch copy
            gram = block @ block.T
            norms = np.diag(gram)
            distances += norms[:, None] + norms[None, :] - 2 * gram
    np.maximum(distances, 0, out=distances)
    np.fill_diagonal(distances, 0)
    return distances


def weighted_mean() -> WeightedMean:
    """The example-weighted mean (FedAvg). Streaming, O(model) memory."""
    return WeightedMean()


def unweighted_mean() -> UnweightedMean:
    """The plain mean, ignoring weights. Streaming, O(model) memory."""
    return UnweightedMean()


def coordinate_median() -> CoordinateMedian:
    """The coordinate-wise median. Not streaming: holds every update."""
    return CoordinateMedian()


def trimmed_mean(beta: float) -> TrimmedMean:
    """The coordinate-wise ``beta``-trimmed mean, ``beta`` in [0, 0.5). Not streaming."""
    return TrimmedMean(beta=beta)


def krum(num_byzantine: int, multi: int = 1) -> Krum:
    """Krum (``multi=1``) or Multi-Krum tolerating ``num_byzantine`` bad nodes. Not streaming."""
    return Krum(num_byzantine=num_byzantine, multi=multi)
