"""What a node runs: the Trainer protocol and the Learner that makes trainers.

A ``Learner`` describes *what* is learned and is known to both sides: it creates the initial
parameters (on the coordinator) and builds a ``Trainer`` for a node's local data (on the node).
A ``Trainer`` does the local work for one node. Keeping both small lets NumPy functions,
scikit-learn estimators and PyTorch modules sit behind the same two calls.

Fit config keys every built-in trainer understands (all optional):

``local_epochs`` (int, default 1), ``local_steps`` (int, overrides epochs when > 0),
``batch_size`` (int, default 32), ``learning_rate`` (float), ``seed`` (int; the engine
derives one per node and round so local shuffling is reproducible), ``proximal_mu`` (float,
FedProx; 0 disables it) and ``scaffold`` (bool; the global control variate then arrives in
``extras`` under ``scaffold/c/<name>`` and the reply returns ``scaffold/delta_c/<name>``).

A task's ``extras`` reach ``Trainer.fit`` as the keyword argument ``extras``. ``NodeApp`` passes
it only when the task carries some, so a trainer that has no use for extras may leave it out.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from fedlearn.core.messages import Config
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import Dataset

NodeState = MutableMapping[str, ParamSet]
"""State a node keeps between rounds (e.g. SCAFFOLD's client control variate); never sent."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FitResult:
    params: ParamSet
    num_examples: int
    metrics: Mapping[str, float] = field(default_factory=dict)
    extras: ParamSet = field(default_factory=ParamSet)


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalResult:
    loss: float
    num_examples: int
    metrics: Mapping[str, float] = field(default_factory=dict)


@runtime_checkable
class Trainer(Protocol):
    """Local training and evaluation on one node's data."""

    def fit(self, params: ParamSet, config: Config, state: NodeState, extras: ParamSet | None = None) -> FitResult:
        """Start from ``params``, train locally, return the new parameters.

        ``extras`` holds the task's extra arrays (e.g. SCAFFOLD's global control variate).
        """
        ...

    def evaluate(self, params: ParamSet, config: Config) -> EvalResult:
        """Loss and metrics of ``params`` on the local data."""
        ...


@runtime_checkable
class Learner(Protocol):
    """What is learned: initial parameters and a trainer for any node's data."""

    def init_params(self, seed: int) -> ParamSet:
        """Initial global parameters; the same seed must give the same bytes."""
        ...

    def trainer(self, data: Dataset) -> Trainer:
        """A trainer bound to one node's local data."""
        ...
