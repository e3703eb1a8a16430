"""The pieces a strategy is composed of, as protocols.

Following optax, every piece is a pair of pure-ish functions with explicit state:

* a ``Sampler`` picks the nodes of a round from the available ones;
* a ``Reducer`` folds client models into one update (relative to the global model it was
  initialised with), so it can subtract the global model inside its own pass instead of every
  reply costing a model-sized difference. A streaming reducer keeps O(model) memory whatever the
  number of replies; one that needs every update (median, Krum) says so with ``streaming = False``;
* a ``ServerTransform`` turns the combined update into the step applied to the global model,
  with state (moments, step counts) held in a ``ParamSet`` so checkpoints can store it.

Randomness always comes from an explicit ``numpy.random.Generator`` that the engine derives
from the run seed and round number; nothing falls back to a fixed default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np

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
class ServerTransform(Protocol):
    def init(self, params: ParamSet) -> ParamSet:
        """Initial state for a model shaped like ``params`` (may be empty)."""
        ...

    def update(
        self, update: ParamSet, state: ParamSet, params: ParamSet, rng: np.random.Generator
    ) -> tuple[ParamSet, ParamSet]:
        """Transform ``update`` into the step to add to ``params``; return ``(step, new_state)``."""
        ...
