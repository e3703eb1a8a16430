"""The pieces a strategy is composed of, as protocols.

Following optax, every piece is a pair of pure-ish functions with explicit state:

* a ``Sampler`` picks the nodes of a round from the available ones;
* a ``Reducer`` folds client models into one update (relative to the global model it was
  initialised with), so it can subtract the global model inside its own pass instead of every
  reply costing a model-sized difference. A streaming reducer keeps O(model) memory whatever the
  number of replies; one that needs every update (median, Krum) says so with ``streaming = False``;
* a ``ServerTransform`` turns the combined update into the step applied to the global model,
  with state (moments, step counts) held in a ``ParamSet`` so checkpoints can store it.

A few reducers need more than one round's replies: centered clipping starts from the previous
round's aggregate, bucketing shuffles the replies. They are a ``RoundReducer``: not a reducer
themselves but a recipe for one, which the strategy binds (``bind``) to each round's state and
generator; the state lives in the strategy's own (under ``reducer/``), so checkpoints hold it as
they hold a transform's moments. A reducer that needs neither stays a plain ``Reducer``.

Randomness always comes from an explicit ``numpy.random.Generator`` that the engine derives
from the run seed and round number; nothing falls back to a fixed default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np

from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import Scalar
from fedlearn.core.params import ParamSet

Acc = TypeVar("Acc")
"""A reducer's accumulator: whatever it folds updates into (a running sum, a pool of models)."""


@runtime_checkable
class Sampler(Protocol):
    def sample(self, available: Sequence[str], rng: np.random.Generator) -> list[str]:
        """The nodes for this round, as a list in a deterministic order."""
        ...


@runtime_checkable
class Reducer(Protocol[Acc]):
    """Folds client models into one update through an accumulator of type ``Acc``.

    The accumulator is the reducer's own business (the engine only passes it back), but naming
    its type lets mypy check that ``init``, ``add`` and ``result`` agree on it. A reducer
    declares it by subclassing, e.g. ``class WeightedMean(Reducer[_RunningSum])``.
    """

    __slots__ = ()  # so that subclasses declared with slots=True hold no __dict__

    @property
    def streaming(self) -> bool:
        """True when memory stays O(model) however many updates are added."""
        ...

    def init(self, template: ParamSet) -> Acc:
        """An empty accumulator for updates relative to ``template``, the global model."""
        ...

    def add(self, acc: Acc, model: ParamSet, weight: float) -> Acc:
        """Fold in one client's model, i.e. the update ``model - template``; may reuse ``acc``'s
        buffers. Called in a deterministic order."""
        ...

    def result(self, acc: Acc) -> ParamSet:
        """The combined update relative to the template, in the template's dtypes."""
        ...


@runtime_checkable
class RoundReducer(Protocol):
    """A reducer that needs state carried from round to round, or randomness, bound once per round.

    ``bind`` is pure: the same state and generator give the same reducer. The strategy keeps the
    state between rounds and checkpoints it; ``next_state`` says what it becomes after a round
    whose combined update was ``update``.
    """

    __slots__ = ()

    @property
    def streaming(self) -> bool:
        """True when the reducers it binds keep O(model) memory however many updates are added."""
        ...

    def init_state(self, params: ParamSet) -> ParamSet:
        """State before the first round, for a model shaped like ``params`` (may be empty)."""
        ...

    def bind(self, state: ParamSet, rng: np.random.Generator) -> Reducer:
        """The reducer for one round, given the state so far and the round's generator."""
        ...

    def next_state(self, state: ParamSet, update: ParamSet) -> ParamSet:
        """The state after a round that combined its replies into ``update``."""
        ...


AnyReducer = Reducer | RoundReducer
"""What a strategy folds updates with: a reducer, or one to bind to each round."""


def bind_reducer(reducer: AnyReducer, state: ParamSet, rng: np.random.Generator) -> Reducer:
    """``reducer`` for one round: bound to ``state`` and ``rng`` if it needs them, else itself."""
    return reducer.bind(state, rng) if isinstance(reducer, RoundReducer) else reducer


def reducer_init_state(reducer: AnyReducer, params: ParamSet) -> ParamSet:
    """The state ``reducer`` starts from: empty unless it is a :class:`RoundReducer`."""
    return reducer.init_state(params) if isinstance(reducer, RoundReducer) else ParamSet()


def reducer_next_state(reducer: AnyReducer, state: ParamSet, update: ParamSet) -> ParamSet:
    """The state ``reducer`` carries into the next round: empty unless it is a :class:`RoundReducer`."""
    return reducer.next_state(state, update) if isinstance(reducer, RoundReducer) else ParamSet()


def check_reducer(name: str, value: object) -> AnyReducer:
    """``value`` if it is a reducer or a round reducer, else a ConfigError naming ``name``."""
    if not isinstance(value, (Reducer, RoundReducer)):
        raise ConfigError(f"`{name}` must implement the Reducer or RoundReducer protocol; got {type(value).__name__}")
    return value


def required_replies(reducer: AnyReducer) -> int:
    """The fewest updates of weight > 0 a round needs: the reducer's ``min_replies`` if it declares one, else 1.

    Krum, Bulyan and the wrappers around them declare it, so a strategy that can never sample
    that many nodes is refused when it is built rather than failing every round.
    """
    return int(getattr(reducer, "min_replies", 1))


@runtime_checkable
class ServerTransform(Protocol):
    def init(self, params: ParamSet) -> ParamSet:
        """Initial state for a model shaped like ``params`` (may be empty)."""
        ...

    def update(
        self, update: ParamSet, state: ParamSet, params: ParamSet, rng: np.random.Generator
    ) -> tuple[ParamSet, ParamSet]:
        """Transform ``update`` into the step to add to ``params``; return ``(step, new_state)``."""
        ...


def reducer_client_config(reducer: object) -> dict[str, Scalar]:
    """The fit-config keys a reducer needs the nodes to honour (worker momentum), through any wrappers.

    A reducer that needs something of the nodes says so with a ``client_config`` mapping; a
    pre-aggregation step (norm bound, bucketing) holds the reducer it wraps as ``reducer``.
    """
    config: dict[str, Scalar] = {}
    while reducer is not None:
        config.update(getattr(reducer, "client_config", None) or {})
        reducer = getattr(reducer, "reducer", None)
    return config
