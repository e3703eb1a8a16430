"""Turn a validated :class:`~fedlearn.config.RunConfig` into the objects a simulation runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from fedlearn.client.learners import build_learner, check_fit_config
from fedlearn.client.trainer import Learner
from fedlearn.client.trusted import trusted_model
from fedlearn.config import RunConfig, engine_config, private_strategy, secure_strategy
from fedlearn.core.errors import ConfigError
from fedlearn.data.dataset import Dataset
from fedlearn.data.split import hold_out, trusted_sample
from fedlearn.engine.engine import EngineConfig
from fedlearn.engine.faults import FaultPlan
from fedlearn.simulation.attacks import AttackPlan, attack_plan
from fedlearn.simulation.run import node_ids
from fedlearn.strategies import build_strategy
from fedlearn.strategies.strategy import Strategy


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationPlan:
    learner: Learner
    partitions: list[Dataset]
    evaluation_data: list[Dataset] | None
    test_data: Dataset
    strategy: Strategy
    engine: EngineConfig
    faults: FaultPlan
    attack: AttackPlan | None = None


def plan_simulation(config: RunConfig) -> SimulationPlan:
    """Load and split the data, partition it over nodes, and build learner and strategy."""
    partitions, test = config.data.split(config.run.seed)
    _check_declared_shape(config, test)
    evaluation_data = None
    if config.data.holdout_fraction > 0:  # each node keeps rows of its own part back, as a deployed node would
        held = [hold_out(part, config.data.holdout_fraction, config.run.seed) for part in partitions]
        partitions, evaluation_data = [fit for fit, _ in held], [rows for _, rows in held]
    engine = engine_config(config)
    if config.simulation.declare_rows:  # as a site would register its row count with the coordinator
        rows = [len(part) + (len(evaluation_data[i]) if evaluation_data else 0) for i, part in enumerate(partitions)]
        engine = replace(engine, declared_examples=dict(zip(node_ids(len(partitions)), rows, strict=True)))
    learner = build_learner(config.model.learner, test, **config.model.options())
    check_fit_config(learner, config.client)
    return SimulationPlan(
        learner=learner,
        partitions=partitions,
        evaluation_data=evaluation_data,
        test_data=test,
        strategy=private_strategy(
            config,
            secure_strategy(
                config,
                build_strategy(config.strategy.name, **_strategy_options(config, learner)),
                n_nodes=len(partitions),
            ),
            n_nodes=len(partitions),
        ),
        engine=engine,
        faults=FaultPlan(seed=config.run.seed, **config.faults.model_dump()),
        attack=_attack_plan(config, len(partitions)),
    )


def _attack_plan(config: RunConfig, nodes: int) -> AttackPlan | None:
    """The ``[attack]`` section's plan over the run's nodes, or None without one."""
    section = config.attack
    if section is None:
        return None
    return attack_plan(
        node_ids(nodes),
        name=section.name,
        seed=config.run.seed,
        fraction=section.fraction,
        nodes=section.nodes,
        knowledge=section.knowledge,
        shards=section.shards,
        options=section.options(),
    )


TRUSTED_EXAMPLES = 100
"""The size of FLTrust's trusted dataset unless ``[strategy.reducer] trusted_examples`` says otherwise: the paper's."""


def _strategy_options(config: RunConfig, learner: Learner) -> dict[str, Any]:
    """The ``[strategy]`` options, with FLTrust's server model made from ``trusted_examples`` training rows.

    The coordinator of a simulation trains ``learner`` on a sample of the training split with the
    ``[client]`` settings (see :func:`~fedlearn.data.split.trusted_sample`); any other reducer's
    table passes through untouched, so ``trusted_examples`` there is an unknown option.
    """
    options = config.strategy.options()
    table = options.get("reducer")
    if not isinstance(table, Mapping) or table.get("name") != "fltrust":
        return options
    table = dict(table)
    data = config.data
    root = trusted_sample(
        data.dataset,
        examples=table.pop("trusted_examples", TRUSTED_EXAMPLES),
        test_fraction=data.test_fraction,
        seed=config.run.seed,
        dataset_options=data.dataset_options,
    )
    table["server_model"] = trusted_model(learner, root, config.client)
    return {**options, "reducer": table}


def _check_declared_shape(config: RunConfig, dataset: Dataset) -> None:
    """A [model] shape written for deployment must match the data a simulation actually loads."""
    model = config.model
    n_features = model.declared_n_features()
    if n_features is not None and n_features != dataset.n_features:
        raise ConfigError(
            f"[model] n_features is {n_features} but dataset {dataset.name!r} has {dataset.n_features} features"
        )
    if model.features is not None and tuple(model.features) != dataset.feature_names:
        raise ConfigError(
            f"[model] features {model.features[:3]}... are not dataset {dataset.name!r}'s columns, "
            f"which begin {list(dataset.feature_names[:3])}"
        )
    if model.n_classes and model.n_classes != dataset.n_classes:
        raise ConfigError(
            f"[model] n_classes is {model.n_classes} but dataset {dataset.name!r} has {dataset.n_classes} classes"
        )
