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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fedlearn.core.checks import Interval, check_int, check_real, name_mismatch
from fedlearn.core.errors import QuorumError, ValidationError
from fedlearn.core.params import ParamSet, Spec
from fedlearn.strategies.base import Reducer

_CHUNK = 1 << 16  # values per scratch block: 512 KiB of float64, small enough to stay in cache
_BLOCK_VALUES = 1 << 20  # values per (nodes x columns) block in the robust reducers


def _check_weight(weight: float) -> float:
    if not math.isfinite(weight) or weight < 0:
        raise ValidationError(f"update weight must be a finite number >= 0; got {weight!r}")
    return weight


def _check_model(spec: Spec, model: ParamSet) -> None:
    mismatch = name_mismatch(model, spec)
    if mismatch:
        raise ValidationError(f"update names differ from the model: {mismatch}")
    for name, (shape, _) in spec.items():
        if model[name].shape != shape:
            raise ValidationError(f"update {name!r} has shape {model[name].shape}; expected {shape}")


def _flat(params: ParamSet) -> dict[str, np.ndarray]:
    return {name: array.reshape(-1) for name, array in params.items()}


def _store(out: np.ndarray, values: np.ndarray) -> None:
    """Write float64 ``values`` into ``out``, rounding first when ``out`` holds integers."""
    if out.dtype.kind in "iu":
        np.rint(values, out=values)
    out[...] = values


class _RunningSum:
    """A float64 sum of weighted updates (model - base) plus the total weight: a streaming mean.

    Each block of an update is ``model - base`` in the model's own dtype, exactly what
    ``ParamSet.__sub__`` would give, then widened, weighted and added while it is in cache.
    """

    __slots__ = ("base", "count", "differences", "scratch", "spec", "sums", "total")

    def __init__(self, base: ParamSet) -> None:
        self.spec = base.spec()
        self.base = _flat(base)
        self.sums = {name: np.zeros(flat.size, dtype=np.float64) for name, flat in self.base.items()}
        size = min(_CHUNK, max((a.size for a in self.sums.values()), default=0))
        self.scratch = np.empty(size, np.float64)
        self.differences = {flat.dtype: np.empty(size, flat.dtype) for flat in self.base.values()}
        self.total = 0.0
        self.count = 0

    def add(self, model: ParamSet, weight: float) -> None:
        """Fold in ``weight * (model - base)``, one cache-sized block at a time."""
        _check_model(self.spec, model)
        self.count += 1
        if weight == 0:  # adds nothing; skipping it also skips the arithmetic
            return
        for name, acc in self.sums.items():
            flat, base = model[name].reshape(-1), self.base[name]
            for start in range(0, acc.size, _CHUNK):
                block = slice(start, start + _CHUNK)
                part = acc[block]
                difference = self.differences[base.dtype][: part.size]
                np.subtract(flat[block], base[block], out=difference)
                if weight == 1.0:  # the unweighted case needs no float64 scratch; the ufunc casts
                    np.add(part, difference, out=part)
                    continue
                scratch = self.scratch[: part.size]
                np.multiply(difference, weight, out=scratch, dtype=np.float64)
                np.add(part, scratch, out=part)
        self.total += weight

    def mean(self, what: str) -> ParamSet:
        if self.count == 0:
            raise QuorumError(f"{what}: no updates to average")
        if self.total == 0:
            raise QuorumError(
                f"{what}: all {self.count} update(s) have weight 0 (num_examples = 0), so there is "
                "nothing to average; check that the nodes' datasets are not empty"
            )
        out: dict[str, np.ndarray] = {}
        for name, (shape, dtype) in self.spec.items():
            result = np.empty(shape, dtype=np.dtype(dtype))
            flat = result.reshape(-1)
            acc = self.sums[name]
            for start in range(0, acc.size, _CHUNK):
                part = acc[start : start + _CHUNK]
                scratch = self.scratch[: part.size]
                np.divide(part, self.total, out=scratch)
                _store(flat[start : start + _CHUNK], scratch)
            out[name] = result
        return ParamSet(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightedMean(Reducer[_RunningSum]):
    """The FedAvg average, sum(w * update) / sum(w), with weights = example counts; streams."""

    streaming: ClassVar[bool] = True

    def init(self, template: ParamSet) -> _RunningSum:
        return _RunningSum(template)

    def add(self, acc: _RunningSum, model: ParamSet, weight: float) -> _RunningSum:
        acc.add(model, _check_weight(weight))
        return acc

    def result(self, acc: _RunningSum) -> ParamSet:
        return acc.mean("weighted_mean")


@dataclass(frozen=True, slots=True, kw_only=True)
class UnweightedMean(Reducer[_RunningSum]):
    """The plain average of the updates, each reply counting once whatever its weight; streams.

    SCAFFOLD's server step is this mean, and it suits nodes whose example counts are not
    comparable (or not to be trusted).
    """

    streaming: ClassVar[bool] = True

    def init(self, template: ParamSet) -> _RunningSum:
        return _RunningSum(template)

    def add(self, acc: _RunningSum, model: ParamSet, weight: float) -> _RunningSum:
        _check_weight(weight)
        acc.add(model, 1.0)
        return acc

    def result(self, acc: _RunningSum) -> ParamSet:
        return acc.mean("unweighted_mean")


class _Pool:
    """Every client model of weight > 0, held as given (they are read-only, so no copies)."""

    __slots__ = ("base", "models", "spec")

    def __init__(self, base: ParamSet) -> None:
        self.spec = base.spec()
        self.base = base
        self.models: list[ParamSet] = []

    def add(self, model: ParamSet, weight: float) -> None:
        _check_model(self.spec, model)
        if _check_weight(weight) > 0:
            self.models.append(model)

    def blocks(self, name: str) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, stack)`` pairs: float64 ``(models x columns)`` slices of the updates to ``name``."""
        flats = [m[name].reshape(-1) for m in self.models]
        base = self.base[name].reshape(-1)
        size = base.size
        step = max(1, _BLOCK_VALUES // len(flats))
        for start in range(0, size, step):
            columns = slice(start, start + step)
            yield start, np.stack([np.subtract(f[columns], base[columns]) for f in flats], dtype=np.float64)

    def columnwise(self, fn: Callable[[np.ndarray], np.ndarray]) -> ParamSet:
        """Apply ``fn`` (a reduction over axis 0 of a block) to every coordinate of the model."""
        out: dict[str, np.ndarray] = {}
        for name, (shape, dtype) in self.spec.items():
            result = np.empty(shape, dtype=np.dtype(dtype))
            flat = result.reshape(-1)
            for start, stack in self.blocks(name):
                _store(flat[start : start + stack.shape[1]], fn(stack))
            out[name] = result
        return ParamSet(out)

    def require(self, needed: int, what: str) -> int:
        count = len(self.models)
        if count < needed:
            raise QuorumError(f"{what} needs at least {needed} update(s) of weight > 0; got {count}")
        return count


@dataclass(frozen=True, slots=True, kw_only=True)
class CoordinateMedian(Reducer[_Pool]):
    """Each coordinate's median across updates (Yin et al. 2018). Holds every update."""

    streaming: ClassVar[bool] = False

    def init(self, template: ParamSet) -> _Pool:
        return _Pool(template)

    def add(self, acc: _Pool, model: ParamSet, weight: float) -> _Pool:
        acc.add(model, weight)
        return acc

    def result(self, acc: _Pool) -> ParamSet:
        acc.require(1, "coordinate_median")
        return acc.columnwise(lambda stack: np.median(stack, axis=0))


@dataclass(frozen=True, slots=True, kw_only=True)
class TrimmedMean(Reducer[_Pool]):
    """Each coordinate's mean after dropping its ``floor(beta * n)`` largest and smallest values.

    Yin et al. 2018. ``beta < 0.5`` always leaves at least one value. Holds every update.
    """

    beta: float

    streaming: ClassVar[bool] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", check_real("beta", self.beta, Interval(0, 0.5, closed="left")))

    def init(self, template: ParamSet) -> _Pool:
        return _Pool(template)

    def add(self, acc: _Pool, model: ParamSet, weight: float) -> _Pool:
        acc.add(model, weight)
        return acc

    def result(self, acc: _Pool) -> ParamSet:
        count = acc.require(1, "trimmed_mean")
        cut = math.floor(self.beta * count)
        return acc.columnwise(lambda stack: np.sort(stack, axis=0)[cut : count - cut].mean(axis=0))


@dataclass(frozen=True, slots=True, kw_only=True)
class Krum(Reducer[_Pool]):
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

    def init(self, template: ParamSet) -> _Pool:
        return _Pool(template)

    def add(self, acc: _Pool, model: ParamSet, weight: float) -> _Pool:
        acc.add(model, weight)
        return acc

    def result(self, acc: _Pool) -> ParamSet:
        f = self.num_byzantine
        what = f"krum(num_byzantine={f}, multi={self.multi})"
        count = acc.require(max(2 * f + 3, self.multi + f), what)
        distances = _squared_distances(acc)
        neighbours = count - f - 2
        scores = [float(np.sort(np.delete(row, i))[:neighbours].sum()) for i, row in enumerate(distances)]
        # Equal scores are broken by content, never by arrival order, so reply order cannot matter.
        tied = {s for s in scores if scores.count(s) > 1}
        order = sorted(range(count), key=lambda i: (scores[i], acc.models[i].digest() if scores[i] in tied else ""))
        chosen = _RunningSum(acc.base)
        for i in order[: self.multi]:
            chosen.add(acc.models[i], 1.0)
        return chosen.mean(what)


def _squared_distances(pool: _Pool) -> np.ndarray:
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
