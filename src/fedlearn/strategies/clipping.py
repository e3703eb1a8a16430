"""Defences that clip updates by their L2 norm: centered clipping and norm bounding.

Both look at each update's norm, so both stream where the algorithm allows it: norm bounding
adds at most one clipped update to the memory of the reducer it guards, and centered clipping
with one iteration keeps O(model). Both are round reducers (:class:`~fedlearn.strategies.base.RoundReducer`):
centered clipping carries its centre from round to round, and norm bounding passes its wrapped
reducer's state and generator through, so it can guard a round reducer too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fedlearn.core.checks import POSITIVE, Interval, check_int, check_real, name_mismatch
from fedlearn.core.errors import QuorumError, ValidationError
from fedlearn.core.messages import CLIENT_MOMENTUM_KEY, Scalar
from fedlearn.core.params import ParamSet
from fedlearn.strategies.accumulators import (
    CHUNK,
    Flats,
    Pool,
    RunningSum,
    check_model,
    check_weight,
    difference_blocks,
    flat,
    store,
    to_params,
    update_norm,
)
from fedlearn.strategies.base import (
    AnyReducer,
    Reducer,
    RoundReducer,
    bind_reducer,
    check_reducer,
    reducer_init_state,
    reducer_next_state,
    required_replies,
)

CENTER_PREFIX = "center/"


@dataclass(frozen=True, slots=True, kw_only=True)
class CenteredClipping(RoundReducer):
    """Centered clipping, Karimireddy, He and Jaggi 2021, centred on the previous round's aggregate.

    "Learning from History for Byzantine Robust Optimization", ICML 2021. Starting from the
    centre ``v`` (the combined update of the previous round; zero, i.e. the current global
    model, before the first), each of ``iterations`` steps sets::

        v = v + (1/n) * sum_i (u_i - v) * min(1, tau / ||u_i - v||)

    so an update far from the centre pulls it by at most ``tau / n``, however far it is. The
    result becomes the next round's centre: the strategy keeps it under ``reducer/center/``
    and checkpoints it. Weights other than 0 are ignored, as in the paper.

    The paper pairs this with worker momentum: each node sends ``m_i = beta * m_i + (1 - beta)
    * update_i`` instead of its raw update, which is what lets history average out the noise
    an attacker hides in. ``momentum=beta`` asks the nodes for it: the strategy sends
    ``client_momentum`` in every fit config and each node keeps its ``m_i``
    (``fedlearn.client.momentum``). Without it the reducer clips raw updates.

    Memory: with ``iterations=1`` (the paper's usual choice) each update is clipped and added as
    it arrives, so O(model) (a float64 sum and the centre) and it streams; with more
    iterations it holds every update, O(n x model).
    """

    tau: float
    iterations: int = 1
    momentum: float | None = None

    needs_each_update: ClassVar[str] = "it clips each update's distance to the centre"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tau", check_real("tau", self.tau, POSITIVE))
        object.__setattr__(self, "iterations", check_int("iterations", self.iterations, low=1))
        if self.momentum is not None:
            object.__setattr__(self, "momentum", check_real("momentum", self.momentum, Interval(0, 1, closed="left")))

    @property
    def client_config(self) -> Mapping[str, Scalar]:
        """What the nodes must do for this reducer: keep worker momentum, when it is asked for."""
        return {} if self.momentum is None else {CLIENT_MOMENTUM_KEY: self.momentum}

    @property
    def streaming(self) -> bool:
        return self.iterations == 1

    def init_state(self, params: ParamSet) -> ParamSet:
        return params.zeros_like().with_prefix(CENTER_PREFIX)

    def bind(self, state: ParamSet, rng: np.random.Generator) -> Reducer:
        center = state.select(CENTER_PREFIX)
        if self.iterations == 1:
            return _ClipOnce(tau=self.tau, center=center)
        return _ClipIteratively(tau=self.tau, iterations=self.iterations, center=center)

    def next_state(self, state: ParamSet, update: ParamSet) -> ParamSet:
        return update.with_prefix(CENTER_PREFIX)


def _center_flats(center: ParamSet, template: ParamSet) -> Flats:
    """The centre as float64 flat arrays, checked to fit the model."""
    mismatch = name_mismatch(center, template)
    if mismatch or any(center[k].shape != template[k].shape for k in template):
        raise ValidationError(
            f"centered clipping's state under {CENTER_PREFIX!r} does not match the model: "
            f"{mismatch or 'shapes differ'}; was it created by this reducer's init_state for this model?"
        )
    return {name: array.reshape(-1).astype(np.float64) for name, array in center.items()}


def _clip_scale(distance: float, tau: float) -> float:
    return 1.0 if distance <= tau else tau / distance


def _recentred(center: Flats, clipped_sum: Flats, scale_sum: float, count: int) -> Flats:
    """``v + (sum_i s_i (u_i - v)) / n`` from ``sum_i s_i u_i`` and ``sum_i s_i``.

    Computed over ``clipped_sum`` in place, a block at a time, so it costs no model-sized temporaries.
    """
    for name, c in center.items():
        out = clipped_sum[name]
        for start in range(0, out.size, CHUNK):
            block = slice(start, start + CHUNK)
            part = out[block]
            part -= scale_sum * c[block]
            part /= count
            part += c[block]
    return clipped_sum


class _Stream:
    __slots__ = ("center", "count", "scale_sum", "sums")

    def __init__(self, template: ParamSet, center: Flats) -> None:
        self.sums = RunningSum(template)
        self.center = center
        self.scale_sum = 0.0
        self.count = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class _ClipOnce(Reducer[_Stream]):
    """One centered-clipping step, folding each update in as it arrives."""

    tau: float
    center: ParamSet

    streaming: ClassVar[bool] = True

    def init(self, template: ParamSet) -> _Stream:
        return _Stream(template, _center_flats(self.center, template))

    def add(self, acc: _Stream, model: ParamSet, weight: float) -> _Stream:
        check_model(acc.sums.spec, model)
        if check_weight(weight) == 0:
            return acc
        scale = _clip_scale(update_norm(model, acc.sums.base, acc.center), self.tau)
        acc.sums.add(model, scale)
        acc.scale_sum += scale
        acc.count += 1
        return acc

    def result(self, acc: _Stream) -> ParamSet:
        if acc.count == 0:
            raise QuorumError("centered_clipping needs at least 1 update(s) of weight > 0; got 0")
        return to_params(acc.sums.spec, _recentred(acc.center, acc.sums.sums, acc.scale_sum, acc.count))


@dataclass(frozen=True, slots=True, kw_only=True)
class _ClipIteratively(Reducer[Pool]):
    """Several centered-clipping steps over the pooled updates (in an order fixed by content)."""

    tau: float
    iterations: int
    center: ParamSet

    streaming: ClassVar[bool] = False

    def init(self, template: ParamSet) -> Pool:
        _center_flats(self.center, template)  # a state that does not fit fails before any reply is held
        return Pool(template)

    def add(self, acc: Pool, model: ParamSet, weight: float) -> Pool:
        acc.add(model, weight)
        return acc

    def result(self, acc: Pool) -> ParamSet:
        count = acc.require(1, "centered_clipping")
        acc.sort_by_content()
        center = _center_flats(self.center, acc.base)
        for _ in range(self.iterations):
            scales = np.array([_clip_scale(d, self.tau) for d in acc.distances(center)])
            center = _recentred(center, acc.combination(scales), float(np.sum(scales)), count)
        return to_params(acc.spec, center)


@dataclass(frozen=True, slots=True, kw_only=True)
class NormBound(RoundReducer):
    """Scale each update down to an L2 norm of at most ``max_norm`` before ``reducer`` sees it.

    Norm bounding, as Sun et al. ("Can You Really Backdoor Federated Learning?", 2019) use it
    against model replacement: an attacker must scale its update up to survive averaging, and
    a bound on each update's norm caps what one node can move. It is a step in front of any
    reducer (``norm_bound(bulyan(2), 10.0)``), not a reducer of its own: updates within the
    bound pass unchanged, the others are replaced by ``update * max_norm / ||update||``. The
    wrapped reducer's state and generator pass through, so it may be a round reducer too.

    Memory: what the wrapped reducer holds, plus one clipped copy of an update at a time; a
    clipped update that the wrapped reducer keeps (a pool) replaces the reply it came from, so
    a pooling reducer holds no more than without the bound. It streams when the wrapped
    reducer does. Cost: one extra pass over each update, to take its norm.
    """

    reducer: AnyReducer
    max_norm: float

    needs_each_update: ClassVar[str] = "it bounds each update's L2 norm"

    def __post_init__(self) -> None:
        check_reducer("reducer", self.reducer)
        object.__setattr__(self, "max_norm", check_real("max_norm", self.max_norm, POSITIVE))

    @property
    def streaming(self) -> bool:
        return self.reducer.streaming

    @property
    def min_replies(self) -> int:
        return required_replies(self.reducer)

    def init_state(self, params: ParamSet) -> ParamSet:
        return reducer_init_state(self.reducer, params)

    def bind(self, state: ParamSet, rng: np.random.Generator) -> Reducer:
        return _Bounded(reducer=bind_reducer(self.reducer, state, rng), max_norm=self.max_norm)

    def next_state(self, state: ParamSet, update: ParamSet) -> ParamSet:
        return reducer_next_state(self.reducer, state, update)


class _BoundedAcc:
    __slots__ = ("base", "inner", "spec")

    def __init__(self, template: ParamSet, inner: object) -> None:
        self.spec = template.spec()
        self.base = flat(template)
        self.inner = inner


@dataclass(frozen=True, slots=True, kw_only=True)
class _Bounded(Reducer[_BoundedAcc]):
    reducer: Reducer
    max_norm: float

    @property
    def streaming(self) -> bool:
        return self.reducer.streaming

    def init(self, template: ParamSet) -> _BoundedAcc:
        return _BoundedAcc(template, self.reducer.init(template))

    def add(self, acc: _BoundedAcc, model: ParamSet, weight: float) -> _BoundedAcc:
        check_model(acc.spec, model)
        if check_weight(weight) > 0:
            norm = update_norm(model, acc.base)
            if norm > self.max_norm:
                model = _scaled(model, acc.base, self.max_norm / norm)
        acc.inner = self.reducer.add(acc.inner, model, weight)
        return acc

    def result(self, acc: _BoundedAcc) -> ParamSet:
        return self.reducer.result(acc.inner)


def _scaled(model: ParamSet, base: Flats, scale: float) -> ParamSet:
    """``base + scale * (model - base)`` in the model's dtypes (rounded for integers), a block at a time."""
    out: dict[str, np.ndarray] = {}
    for name, array in model.items():
        scaled = np.empty(array.shape, array.dtype)
        values = scaled.reshape(-1)
        for _, columns, difference in difference_blocks(ParamSet({name: array}), {name: base[name]}):
            moved = np.multiply(difference, scale, out=difference)
            store(values[columns], np.add(moved, base[name][columns], out=moved))
        out[name] = scaled
    return ParamSet(out)


def centered_clipping(tau: float, iterations: int = 1, momentum: float | None = None) -> CenteredClipping:
    """Centered clipping with radius ``tau`` around the previous round's aggregate; streams when ``iterations=1``.

    ``momentum`` (``beta`` in [0, 1), the paper uses 0.9) has every node send its worker momentum.
    """
    return CenteredClipping(tau=tau, iterations=iterations, momentum=momentum)


def norm_bound(reducer: AnyReducer, max_norm: float) -> NormBound:
    """``reducer`` behind a bound of ``max_norm`` on each update's L2 norm."""
    return NormBound(reducer=reducer, max_norm=max_norm)
