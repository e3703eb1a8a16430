"""A registry of one's own: a simulation's model and a fitted estimator, registered, aliased and loaded back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedlearn.analytics import FederatedLinearRegression
from fedlearn.client.learners import builtin_learner
from fedlearn.core.errors import ConfigError, NotFoundError
from fedlearn.engine import EngineConfig
from fedlearn.registry import Registry
from fedlearn.simulation import simulate
from fedlearn.strategies import build_strategy
from tests.registry.conftest import CLIENT, blobs, line


def test_a_simulated_model_registers_with_its_lineage_and_loads_back_predicting_the_same(tmp_path: Path) -> None:
    data = blobs(3)
    learner = builtin_learner("numpy.softmax", data)
    parts = [data.subset(np.arange(i, len(data), 3)) for i in range(3)]
    run = simulate(learner, parts, build_strategy("fedavg"), EngineConfig(rounds=2, seed=1, client_config=CLIENT))

    with Registry(f"sqlite:///{tmp_path / 'models.db'}") as registry:
        record = registry.register(run, name="blobs", data=data, learner="numpy.softmax", alias="champion")
        model = registry.load("blobs@champion")
        package = registry.package("blobs@1")

    assert record.version == 1 and model.version == "blobs/1"
    assert package.lineage["source"] == "simulation" and package.lineage["nodes"]["replies_per_round"] == [3, 3]
    assert package.lineage["nodes"]["contributed"] == ["node-000", "node-001", "node-002"]
    logits = data.x @ run.params["weight"] + run.params["bias"]
    np.testing.assert_array_equal(model.predict(data.x), logits.argmax(axis=1))


def test_a_fitted_estimator_registers_as_the_next_version(tmp_path: Path) -> None:
    data = line()
    estimator = FederatedLinearRegression().fit(data.x, data.y)

    with Registry(f"sqlite:///{tmp_path / 'models.db'}") as registry:
        registry.register(estimator, name="line", data=data)
        second = registry.register(estimator, name="line", data=data)
        model = registry.load("line")

    assert second.version == 2 and model.version == "line/2"
    np.testing.assert_allclose(model.predict(data.x), estimator.predict(data.x), rtol=1e-6)


def test_a_simulation_without_its_learner_and_an_unknown_alias_are_refused(tmp_path: Path) -> None:
    data = blobs(2)
    run = simulate(builtin_learner("numpy.softmax", data), [data], build_strategy("fedavg"),
                   EngineConfig(rounds=1, seed=0, client_config=CLIENT))  # fmt: skip

    with Registry(f"sqlite:///{tmp_path / 'models.db'}") as registry:
        with pytest.raises(ConfigError, match="needs `learner`"):
            registry.register(run, name="blobs", data=data)
        registry.register(run, name="blobs", data=data, learner="numpy.softmax")
        with pytest.raises(NotFoundError):
            registry.load("blobs@nonesuch")
