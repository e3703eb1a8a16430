"""Turn a run config into what a coordinator runs, without any data at hand.

A coordinator never sees rows, so the model's shape comes from ``[model]`` (``n_features``,
``n_classes``, ``task``), not from a dataset. A run config arrives over the HTTP API, so it may
name only built-in learners, or entry points the operator allowed when starting the
coordinator: a config must never make the coordinator import and run code of the sender's choosing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from fedlearn.client.learners import build_learner, check_fit_config
from fedlearn.client.trainer import Learner
from fedlearn.client.trusted import trusted_model
from fedlearn.config import RunConfig, engine_config, private_strategy, secure_strategy
from fedlearn.core.errors import ConfigError
from fedlearn.data.dataset import Dataset, TaskType
from fedlearn.engine.engine import EngineConfig
from fedlearn.privacy.graph import MIN_NODES
from fedlearn.strategies import build_strategy
from fedlearn.strategies.strategy import Strategy


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelShape:
    """The data description a learner needs, declared instead of read from data."""

    n_features: int
    n_classes: int
    task: TaskType


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentPlan:
    learner: Learner
    strategy: Strategy
    engine: EngineConfig


def plan_deployment(
    config: RunConfig,
    *,
    run_id: str,
    allowed_learners: Collection[str] = (),
    trusted: Mapping[str, Dataset] | None = None,
) -> DeploymentPlan:
    """Validate a run config for a coordinator and build its learner, strategy and engine settings.

    ``trusted`` are the datasets the coordinator itself holds (``--trusted-data``): FLTrust's
    ``[strategy.reducer] trusted_dataset`` names one, and the coordinator trains on it each round.
    """
    model = config.model
    if config.attack is not None:
        raise ConfigError(
            "[attack] applies to simulations only: a coordinator cannot make nodes attack; for a red-team "
            "exercise, give the attacking node an [attack] section in its own NODE.toml"
        )
    if ":" in model.learner and model.learner not in allowed_learners:
        raise ConfigError(
            f"[model] learner {model.learner!r} is not a built-in learner; the coordinator operator must allow it "
            "with --allow-learner"
        )
    n_features = model.declared_n_features()
    if n_features is None:
        raise ConfigError(
            "[model] n_features (or features) is required for a deployed run: the coordinator never sees the "
            "data, so the model's shape must be declared (also n_classes for classification)"
        )
    shape = ModelShape(n_features=n_features, n_classes=model.n_classes, task=model.task)
    learner = build_learner(model.learner, shape, **model.options())
    check_fit_config(learner, config.client)
    options = _with_trusted_model(config, learner, trusted or {})
    strategy = build_strategy(config.strategy.name, **options)
    return DeploymentPlan(
        learner=learner,
        # Checked for the fewest nodes a secure round takes; each round checks again for the nodes it has.
        strategy=private_strategy(
            config,
            secure_strategy(config, strategy, n_nodes=max(MIN_NODES, config.engine.min_available_nodes)),
            n_nodes=max(MIN_NODES, config.engine.min_available_nodes),
        ),
        engine=replace(engine_config(config), run_id=run_id),
    )


def _with_trusted_model(config: RunConfig, learner: Learner, trusted: Mapping[str, Dataset]) -> dict[str, Any]:
    """The ``[strategy]`` options, with FLTrust's server model trained on the coordinator's named dataset."""
    options = config.strategy.options()
    table = options.get("reducer")
    if not isinstance(table, Mapping) or table.get("name") != "fltrust":
        return options
    table = dict(table)
    name = table.pop("trusted_dataset", None)
    if not trusted:
        raise ConfigError(
            "reducer 'fltrust' trains on a trusted dataset the coordinator holds, and this coordinator holds "
            "none: start it with --trusted-data FILE and name one as [strategy.reducer] trusted_dataset"
        )
    if name not in trusted:
        raise ConfigError(
            f"[strategy.reducer] trusted_dataset must name one of the coordinator's trusted datasets "
            f"{sorted(trusted)}; got {name!r}"
        )
    data = trusted[name]
    if data.n_features != config.model.declared_n_features():
        raise ConfigError(
            f"the trusted dataset {name!r} has {data.n_features} features but [model] declares "
            f"{config.model.declared_n_features()}"
        )
    table["server_model"] = trusted_model(learner, data, config.client)
    return {**options, "reducer": table}
