"""The two accumulators every reducer is built on: a streaming float64 sum, and a pool of updates.

A reducer that streams folds each update into a :class:`RunningSum` the size of the model and
lets the update go, so memory stays O(model) however many nodes reply (the design's memory
invariant). A reducer that needs every update at once (a median, Krum, a geometric median) keeps
them in a :class:`Pool`, O(nodes x model), as received: replies are read-only, so holding them
costs no copies. Both work through the model in blocks small enough to stay in cache, and both
subtract the global model inside those blocks, so no reply ever costs a model-sized difference.

Everything here is internal to ``fedlearn.strategies``: the public pieces are the reducers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from fedlearn.core.checks import name_mismatch
from fedlearn.core.errors import QuorumError, ValidationError
from fedlearn.core.params import ParamSet, Spec

CHUNK = 1 << 16
"""Values per scratch block: 512 KiB of float64, small enough to stay in cache."""
BLOCK_VALUES = 1 << 20
"""Values per (updates x columns) block of a pool."""

Flats = dict[str, np.ndarray]
"""A model-shaped set of flat float64 arrays: an update (relative to the global model) being computed."""


def check_weight(weight: float) -> float:
    if not math.isfinite(weight) or weight < 0:
        raise ValidationError(f"update weight must be a finite number >= 0; got {weight!r}")
    return weight


def check_model(spec: Spec, model: ParamSet) -> None:
    mismatch = name_mismatch(model, spec)
    if mismatch:
        raise ValidationError(f"update names differ from the model: {mismatch}")
    for name, (shape, _) in spec.items():
        if model[name].shape != shape:
            raise ValidationError(f"update {name!r} has shape {model[name].shape}; expected {shape}")


def flat(params: ParamSet) -> dict[str, np.ndarray]:
    return {name: array.reshape(-1) for name, array in params.items()}


def store(out: np.ndarray, values: np.ndarray) -> None:
    """Write float64 ``values`` into ``out``, rounding first when ``out`` holds integers."""
    if out.dtype.kind in "iu":
        np.rint(values, out=values)
    out[...] = values


def to_params(spec: Spec, flats: Mapping[str, np.ndarray]) -> ParamSet:
    """Float64 flat arrays as a ``ParamSet`` in ``spec``'s shapes and dtypes (integers rounded)."""
    out: dict[str, np.ndarray] = {}
    for name, (shape, dtype) in spec.items():
        result = np.empty(shape, dtype=np.dtype(dtype))
        values, source = result.reshape(-1), flats[name]
        for start in range(0, source.size, CHUNK):
            store(values[start : start + CHUNK], np.array(source[start : start + CHUNK], dtype=np.float64))
        out[name] = result
    return ParamSet(out)


def difference_blocks(model: ParamSet, base: Mapping[str, np.ndarray]) -> Iterator[tuple[str, slice, np.ndarray]]:
    """``(name, columns, block)``: ``model - base`` in float64, one cache-sized block at a time.

    Each block is subtracted in the model's own dtype (exactly what ``ParamSet.__sub__`` gives)
    and then widened, so a norm or a dot product costs one pass and no model-sized temporary.
    """
    for name, base_flat in base.items():
        values = model[name].reshape(-1)
        for start in range(0, base_flat.size, CHUNK):
            columns = slice(start, start + CHUNK)
            yield name, columns, np.subtract(values[columns], base_flat[columns]).astype(np.float64, copy=False)


def update_norm(
    model: ParamSet, base: Mapping[str, np.ndarray], center: Mapping[str, np.ndarray] | None = None
) -> float:
    """``||model - base - center||`` in float64 (``center`` defaults to zero), in one pass.

    Without ``center`` (DP's clipping: once per update per round) float32 blocks are squared in
    float32 and summed in float64 (:func:`_squared_norm`), half the work of widening them first.
    """
    if center is None:
        return math.sqrt(_squared_norm(model, base))
    total = 0.0
    for name, columns, block in difference_blocks(model, base):
        if center is not None:
            block = block - center[name][columns]  # noqa: PLW2901 -- a new block, not the loop's
        total += float(np.dot(block, block))
    return math.sqrt(total)


_ROUNDING = 1 + 2.0**-23
"""Squares rounded to float32 are each within a factor 1 ± 2^-24 of the exact ones; this covers their sum."""
_SUBNORMAL = 2.0**-149
"""Below float32's normal range a square's error is absolute, at most this (the least subnormal): each adds it."""
_WIDE_ROUNDING = 1 + CHUNK * 2.0**-52
"""A float64 dot product of ``CHUNK`` exact squares is within a factor ``1 ± CHUNK · 2^-53`` of their sum."""


def _squared_norm(model: ParamSet, base: Mapping[str, np.ndarray]) -> float:
    """``||model - base||²``, never below the exact value: DP's clipping must not let an update past ``C``.

    float32 blocks are subtracted and squared in float32 in one reused buffer and summed in float64,
    and each block's sum is raised by :data:`_ROUNDING` to cover the squares' rounding. Other dtypes,
    and a block whose squares overflow float32, are widened first, as in :func:`difference_blocks`.
    """
    total = 0.0
    for name, base_flat in base.items():
        values = model[name].reshape(-1)
        fast = values.dtype == base_flat.dtype == np.float32
        scratch = np.empty(min(CHUNK, base_flat.size), dtype=np.float32) if fast else None
        for start in range(0, base_flat.size, CHUNK):
            columns = slice(start, start + CHUNK)
            if scratch is not None:
                block = scratch[: min(CHUNK, base_flat.size - start)]
                np.subtract(values[columns], base_flat[columns], out=block)
                with np.errstate(over="ignore"):  # an overflowing block is widened below
                    np.multiply(block, block, out=block)
                squares = (float(np.add.reduce(block, dtype=np.float64)) + block.size * _SUBNORMAL) * _ROUNDING
                if math.isfinite(squares):
                    total += squares
                    continue
            wide = np.subtract(values[columns], base_flat[columns]).astype(np.float64, copy=False)
            total += float(np.dot(wide, wide)) * _WIDE_ROUNDING
    return total


class RunningSum:
    """A float64 sum of weighted updates (model - base) plus the total weight: a streaming mean.

    Each block of an update is ``model - base`` in the model's own dtype, exactly what
    ``ParamSet.__sub__`` would give, then widened, weighted and added while it is in cache.
    """

    __slots__ = ("base", "count", "differences", "scratch", "spec", "sums", "total")

    def __init__(self, base: ParamSet) -> None:
        self.spec = base.spec()
        self.base = flat(base)
        self.sums = {name: np.zeros(f.size, dtype=np.float64) for name, f in self.base.items()}
        size = min(CHUNK, max((a.size for a in self.sums.values()), default=0))
        self.scratch = np.empty(size, np.float64)
        self.differences = {f.dtype: np.empty(size, f.dtype) for f in self.base.values()}
        self.total = 0.0
        self.count = 0

    def add(self, model: ParamSet, weight: float) -> None:
        """Fold in ``weight * (model - base)``, one cache-sized block at a time."""
        check_model(self.spec, model)
        self.count += 1
        if weight == 0:  # adds nothing; skipping it also skips the arithmetic
            return
        for name, acc in self.sums.items():
            values, base = model[name].reshape(-1), self.base[name]
            for start in range(0, acc.size, CHUNK):
                block = slice(start, start + CHUNK)
                part = acc[block]
                difference = self.differences[base.dtype][: part.size]
                np.subtract(values[block], base[block], out=difference)
                if weight == 1.0:  # the unweighted case needs no float64 scratch; the ufunc casts
                    np.add(part, difference, out=part)
                    continue
                scratch = self.scratch[: part.size]
                np.multiply(difference, weight, out=scratch, dtype=np.float64)
                np.add(part, scratch, out=part)
        self.total += weight

    def mean(self, what: str) -> ParamSet:
        """The weighted mean of the updates added, in the base's dtypes."""
        if self.count == 0:
            raise QuorumError(f"{what}: no updates to average")
        if self.total == 0:
            raise QuorumError(
                f"{what}: all {self.count} update(s) have weight 0 (num_examples = 0), so there is "
                "nothing to average; check that the nodes' datasets are not empty"
            )
        return self.divided(self.total)

    def divided(self, divisor: float) -> ParamSet:
        """The sum divided by ``divisor`` (not necessarily the total weight), in the base's dtypes."""
        out: dict[str, np.ndarray] = {}
        for name, (shape, dtype) in self.spec.items():
            result = np.empty(shape, dtype=np.dtype(dtype))
            values = result.reshape(-1)
            acc = self.sums[name]
            for start in range(0, acc.size, CHUNK):
                part = acc[start : start + CHUNK]
                scratch = self.scratch[: part.size]
                np.divide(part, divisor, out=scratch)
                store(values[start : start + CHUNK], scratch)
            out[name] = result
        return ParamSet(out)


class Pool:
    """Every client model of weight > 0 and its weight, held as given (read-only, so no copies)."""

    __slots__ = ("base", "digests", "models", "spec", "weights")

    def __init__(self, base: ParamSet) -> None:
        self.spec = base.spec()
        self.base = base
        self.models: list[ParamSet] = []
        self.weights: list[float] = []
        self.digests: dict[int, str] = {}

    def add(self, model: ParamSet, weight: float) -> None:
        check_model(self.spec, model)
        if check_weight(weight) > 0:
            self.models.append(model)
            self.weights.append(weight)

    def blocks(self, name: str, indices: Sequence[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, stack)`` pairs: float64 ``(models x columns)`` slices of the updates to ``name``.

        ``indices`` picks some of the pooled models, in that order; by default all, as added.
        """
        chosen = self.models if indices is None else [self.models[i] for i in indices]
        flats = [m[name].reshape(-1) for m in chosen]
        base = self.base[name].reshape(-1)
        step = max(1, BLOCK_VALUES // max(1, len(flats)))
        for start in range(0, base.size, step):
            columns = slice(start, start + step)
            yield start, np.stack([np.subtract(f[columns], base[columns]) for f in flats], dtype=np.float64)

    def columnwise(self, fn: Callable[[np.ndarray], np.ndarray], indices: Sequence[int] | None = None) -> ParamSet:
        """Apply ``fn`` (a reduction over axis 0 of a block) to every coordinate of the model."""
        out: dict[str, np.ndarray] = {}
        for name, (shape, dtype) in self.spec.items():
            result = np.empty(shape, dtype=np.dtype(dtype))
            values = result.reshape(-1)
            for start, stack in self.blocks(name, indices):
                store(values[start : start + stack.shape[1]], fn(stack))
            out[name] = result
        return ParamSet(out)

    def distances(self, center: Mapping[str, np.ndarray]) -> np.ndarray:
        """``||update_i - center||`` for every pooled update, in float64, one block at a time."""
        squares = np.zeros(len(self.models), dtype=np.float64)
        for name in self.spec:
            for start, stack in self.blocks(name):
                stack -= center[name][start : start + stack.shape[1]]  # noqa: PLW2901 -- a fresh scratch copy
                squares += np.einsum("ij,ij->i", stack, stack)
        return np.sqrt(squares)

    def combination(self, coefficients: np.ndarray) -> Flats:
        """``sum_i coefficients[i] * update_i`` as float64 flat arrays.

        ``einsum`` rather than a matrix product, so the order of the additions (and so every
        bit of the result) does not depend on how many threads BLAS happens to use.
        """
        out: Flats = {}
        for name, (shape, _) in self.spec.items():
            values = np.empty(math.prod(shape), dtype=np.float64)
            for start, stack in self.blocks(name):
                values[start : start + stack.shape[1]] = np.einsum("i,ij->j", coefficients, stack)
            out[name] = values
        return out

    def digest(self, index: int) -> str:
        """The content digest of pooled model ``index``, computed once (a hash pass over the model)."""
        if index not in self.digests:
            self.digests[index] = self.models[index].digest()
        return self.digests[index]

    def sort_by_content(self) -> None:
        """Put the pooled models in an order fixed by their contents (and weights), not by arrival.

        An iterative reducer that sums over the pool then computes the same bits whatever order
        the replies came in, and a random draw over the pool (bucketing's shuffle) is a function
        of the seed and the replies alone. Costs one hash pass over each model.
        """
        keys = [(self.digest(i), weight) for i, weight in enumerate(self.weights)]
        order = sorted(range(len(keys)), key=keys.__getitem__)
        self.models = [self.models[i] for i in order]
        self.weights = [self.weights[i] for i in order]
        self.digests = {new: self.digests[old] for new, old in enumerate(order)}

    def require(self, needed: int, what: str) -> int:
        count = len(self.models)
        if count < needed:
            raise QuorumError(f"{what} needs at least {needed} update(s) of weight > 0; got {count}")
        return count


class Pooling:
    """The ``init`` and ``add`` of a reducer that holds every update: a :class:`Pool` of them.

    A reducer that needs all updates at once (median, trimmed mean, Krum, Bulyan, the geometric
    median) declares ``class Median(Pooling, Reducer[Pool])`` and writes only its ``result``.
    """

    __slots__ = ()

    def init(self, template: ParamSet) -> Pool:
        return Pool(template)

    def add(self, acc: Pool, model: ParamSet, weight: float) -> Pool:
        acc.add(model, weight)
        return acc
