"""Turn a validated :class:`~fedlearn.config.RunConfig` into the objects a simulation runs."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from fedlearn.client.learners import DatasetMeta, builtin_learner
from fedlearn.client.trainer import Learner
from fedlearn.config import DataSection, RunConfig
from fedlearn.core.errors import ConfigError
from fedlearn.core.validation import Limits
from fedlearn.data.dataset import Dataset
from fedlearn.data.datasets import load_dataset, train_test_split
from fedlearn.data.partition import partition
from fedlearn.engine.engine import EngineConfig
from fedlearn.engine.faults import FaultPlan
from fedlearn.strategies import build_strategy
from fedlearn.strategies.strategy import Strategy


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationPlan:
    learner: Learner
    partitions: list[Dataset]
    test_data: Dataset
    strategy: Strategy
    engine: EngineConfig
    faults: FaultPlan


def engine_config(config: RunConfig) -> EngineConfig:
    """The engine settings of a run config; shared by simulation and the networked runtime."""
    e = config.engine
    return EngineConfig(
        rounds=config.run.rounds,
        seed=config.run.seed,
        round_timeout=e.round_timeout,
        min_replies=e.min_replies,
        min_reply_fraction=e.min_reply_fraction,
        min_available_nodes=e.min_available_nodes,
        wait_for_nodes_timeout=e.wait_for_nodes_timeout,
        evaluate_every=e.evaluate_every,
        evaluate_fraction=e.evaluate_fraction,
        client_config=config.client,
        limits=Limits(max_bytes=e.max_message_bytes),
        reorder_buffer_bytes=e.reorder_buffer_bytes,
    )


def build_learner(name: str, data: DatasetMeta, **options: Any) -> Learner:
    """A built-in learner by name, or a user's ``package.module:function`` returning a Learner.

    A user function is called as ``function(data, **options)``, where ``data`` carries
    ``n_features``, ``n_classes`` and ``task`` (no rows are needed to build a model).
    """
    if ":" not in name:
        return builtin_learner(name, data, **options)
    module_name, _, attribute = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"[model] learner {name!r} cannot be loaded: {exc}") from exc
    learner = factory(data, **options)
    if not isinstance(learner, Learner):
        raise ConfigError(f"[model] learner {name!r} returned {type(learner).__name__}, which is not a Learner")
    return learner


def split_data(data: DataSection, seed: int) -> tuple[list[Dataset], Dataset]:
    """Load a built-in dataset, hold out the test split and partition the rest over nodes.

    A deployed node configured with the same section and seed takes its own part from here, so
    it trains on exactly the rows its simulated twin would.
    """
    dataset = load_dataset(data.dataset, **data.dataset_options)
    train, test = train_test_split(dataset, data.test_fraction, seed)
    parts = partition(data.partition, train, data.nodes, seed, **data.partition_options)
    return [train.subset(ix) for ix in parts], test


def plan_simulation(config: RunConfig) -> SimulationPlan:
    """Load and split the data, partition it over nodes, and build learner and strategy."""
    partitions, test = split_data(config.data, config.run.seed)
    _check_declared_shape(config, test)
    return SimulationPlan(
        learner=build_learner(config.model.learner, test, **config.model.options()),
        partitions=partitions,
        test_data=test,
        strategy=build_strategy(config.strategy.name, **config.strategy.options()),
        engine=engine_config(config),
        faults=FaultPlan(seed=config.run.seed, **config.faults.model_dump()),
    )


def _check_declared_shape(config: RunConfig, dataset: Dataset) -> None:
    """A [model] shape written for deployment must match the data a simulation actually loads."""
    model = config.model
    if model.n_features is not None and model.n_features != dataset.n_features:
        raise ConfigError(
            f"[model] n_features is {model.n_features} but dataset {dataset.name!r} has {dataset.n_features} features"
        )
    if model.n_classes and model.n_classes != dataset.n_classes:
        raise ConfigError(
            f"[model] n_classes is {model.n_classes} but dataset {dataset.name!r} has {dataset.n_classes} classes"
        )
