"""A model registry of one's own, for scripts and notebooks that train without a coordinator.

The coordinator keeps its registry in its store (``fedlearn models``, ``/api/models``). A data
scientist who trains in simulation or fits analytics in a script wants the same thing without
running a coordinator: :class:`Registry` opens any store URL (a SQLite file is enough) and
registers, aliases and loads versions through the same catalog functions the coordinator uses,
in the same package format. A version therefore moves between a notebook and a coordinator by
``export`` and ``register``, unchanged.

Registering a simulation needs what the result alone does not say: which built-in learner made
the parameters (and its options), and the data description they were trained for. The latter is
any node's ``Dataset``: its input schema, task and class count are what every node shared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from fedlearn.core.errors import ConfigError
from fedlearn.data.dataset import Dataset
from fedlearn.data.schema import InputSchema
from fedlearn.engine.history import RoundRecord
from fedlearn.registry.catalog import contributed, json_ready, package_bytes, register, resolve
from fedlearn.registry.package import ModelPackage
from fedlearn.registry.predictors import RegisteredModel, analytics_package, load_package
from fedlearn.runtime.store import ModelRecord, Store, open_store
from fedlearn.simulation.run import SimulationResult


class Registry:
    """Model versions in the store at ``url``: register, alias, list and load them."""

    def __init__(self, url: str = "sqlite:///fedlearn-models.db") -> None:
        self._store: Store = open_store(url)

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._store.close()

    def register(
        self,
        model: SimulationResult | Any,
        *,
        name: str,
        data: Dataset,
        learner: str | None = None,
        options: Mapping[str, Any] | None = None,
        alias: str | None = None,
        lineage: Mapping[str, Any] | None = None,
    ) -> ModelRecord:
        """Register a simulation's model (name its ``learner``) or a fitted analytics estimator.

        ``data`` is the description every node shared (its schema, task and classes); ``alias``,
        when given, points at the new version at once.
        """
        if isinstance(model, SimulationResult):
            if learner is None:
                raise ConfigError("registering a simulation needs `learner`, the built-in learner that trained it")
            package = simulation_package(model, name=name, data=data, learner=learner, options=options or {},
                                         lineage=lineage)  # fmt: skip
        else:
            package = analytics_package(model, name=name, schema=_schema_of(data), lineage=lineage)
        record = register(self._store, package)
        return record if alias is None else self.alias(name, alias, record.version)

    def alias(self, name: str, alias: str, version: int) -> ModelRecord:
        """Point ``name@alias`` at ``version`` (a new alias, or a moved one)."""
        return self._store.set_model_alias(name, alias, version)

    def versions(self, name: str | None = None) -> list[ModelRecord]:
        return self._store.list_models(name)

    def package(self, ref: str) -> ModelPackage:
        """The package of ``name``, ``name@VERSION`` or ``name@ALIAS``, as registered."""
        return ModelPackage.from_bytes(package_bytes(self._store, resolve(self._store, ref)))

    def load(self, ref: str) -> RegisteredModel:
        """The model ``ref`` names, ready to predict."""
        return load_package(self.package(ref))


def simulation_package(
    result: SimulationResult,
    *,
    name: str,
    data: Dataset,
    learner: str,
    options: Mapping[str, Any],
    lineage: Mapping[str, Any] | None = None,
) -> ModelPackage:
    """The package of a simulated run's final model, trained by the built-in ``learner``."""
    return ModelPackage(
        name=name,
        version=1,
        kind="learner",
        model=learner,
        options=dict(options),
        task=data.task,
        classes=tuple(range(data.n_classes)) if data.task == "classification" else (),
        schema=_schema_of(data),
        params=result.params,
        lineage=dict(lineage) if lineage is not None else simulation_lineage(result.history),
    )


def simulation_lineage(history: Sequence[RoundRecord]) -> dict[str, Any]:
    """The lineage a simulated run can tell, in the fields a coordinator's run fills in."""
    last = history[-1] if history else None
    left_out: dict[str, str] = {}
    for record in history:
        left_out.update(record.failures)
    return json_ready({
        "source": "simulation",
        "round": len(history),
        "nodes": {
            "contributed": contributed(tuple(history)),
            "replies_per_round": [record.replies for record in history],
            "left_out": left_out,
        },
        "privacy": {"epsilon": last.epsilon if last is not None else None},
        "metrics": {} if last is None else {
            "fit": dict(last.fit_metrics), "federated": dict(last.federated_metrics),
            "central": dict(last.central_metrics),
        },
    })  # fmt: skip


def _schema_of(data: Dataset) -> InputSchema:
    if data.schema is None:
        raise ConfigError(f"dataset {data.name!r} has no feature columns, so no input schema to register")
    return data.schema
