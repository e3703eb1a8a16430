"""The run config's model declaration: its feature names travel to nodes and must agree with its shape."""

from __future__ import annotations

import json

import pytest

from fedlearn.config import engine_config, parse_config
from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import FEATURES_KEY
from fedlearn.runtime.deployment import plan_deployment
from fedlearn.simulation import plan_simulation

IRIS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def test_declared_features_travel_to_nodes_in_the_task_config() -> None:
    config = parse_config({"model": {"features": ["age", "bmi"]}})

    assert json.loads(engine_config(config).client_config[FEATURES_KEY]) == ["age", "bmi"]


def test_declared_features_give_a_deployed_model_its_width() -> None:
    config = parse_config({"model": {"features": ["age", "bmi"], "n_classes": 2}})

    plan = plan_deployment(config, run_id="r")

    assert plan.learner.init_params(0)["weight"].shape == (2, 2)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"features": ["a", "b"], "n_features": 3, "n_classes": 2}, "n_features is 3 but `features` names 2"),
        ({"features": ["a", "a"], "n_classes": 2}, "names a column twice"),
        ({"n_classes": 2}, r"n_features \(or features\) is required"),
    ],
)
def test_a_deployed_model_declaration_that_cannot_hold_is_refused(model: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_deployment(parse_config({"model": model}), run_id="r")


def test_a_simulation_checks_declared_features_against_its_dataset() -> None:
    plan_simulation(parse_config({"data": {"dataset": "iris", "nodes": 2}, "model": {"features": IRIS}}))

    with pytest.raises(ConfigError, match="are not dataset 'iris'"):
        plan_simulation(parse_config({"data": {"dataset": "iris", "nodes": 2}, "model": {"features": IRIS[::-1]}}))
