"""The run config's model declaration (its feature names travel to nodes and must agree with its shape)
and its [strategy.reducer] table (a robust reducer, FLTrust's trusted data in a simulation)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedlearn.client.trusted import TrustedModel
from fedlearn.config import engine_config, parse_config
from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import FEATURES_KEY
from fedlearn.runtime.deployment import plan_deployment
from fedlearn.simulation import plan_simulation
from fedlearn.strategies.bucketing import Bucketing
from fedlearn.strategies.robust import Bulyan

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


# Robust reducers named in [strategy.reducer] ----------------------------------------------------

IRIS_RUN = {"data": {"dataset": "iris", "nodes": 4}, "client": {"local_epochs": 1, "learning_rate": 0.1}}


def test_a_reducer_table_in_the_run_config_gives_the_strategy_its_reducer() -> None:
    config = parse_config(
        {
            **IRIS_RUN,
            "strategy": {"name": "fedadam", "reducer": {"name": "bulyan", "num_byzantine": 0, "bucket_size": 1}},
        }
    )

    plan = plan_simulation(config)

    assert plan.strategy.reducer == Bucketing(reducer=Bulyan(num_byzantine=0), bucket_size=1)


def test_fltrust_in_a_simulation_trains_the_learner_on_trusted_training_rows() -> None:
    strategy = {"name": "fedavg", "reducer": {"name": "fltrust", "trusted_examples": 30}}
    plan = plan_simulation(parse_config({**IRIS_RUN, "strategy": strategy}))
    params = plan.learner.init_params(0)
    server_model = plan.strategy.reducer.server_model

    trained = server_model(params, np.random.default_rng(1))

    assert isinstance(server_model, TrustedModel)
    assert server_model.trainer.fit(params, {"local_epochs": 1}, {}).num_examples == 30
    assert not trained.bitwise_equal(params)
    assert trained.bitwise_equal(server_model(params, np.random.default_rng(1)))


def test_fltrust_with_more_trusted_examples_than_training_rows_is_refused() -> None:
    strategy = {"name": "fedavg", "reducer": {"name": "fltrust", "trusted_examples": 1000}}

    with pytest.raises(ConfigError, match="`trusted_examples` must be at most the 120 training rows of dataset 'iris'"):
        plan_simulation(parse_config({**IRIS_RUN, "strategy": strategy}))


def test_trusted_examples_for_another_reducer_is_an_unknown_option() -> None:
    strategy = {"name": "fedavg", "reducer": {"name": "krum", "num_byzantine": 0, "trusted_examples": 10}}

    with pytest.raises(ConfigError, match=r"unknown option\(s\) trusted_examples for reducer 'krum'"):
        plan_simulation(parse_config({**IRIS_RUN, "strategy": strategy}))


def test_fltrust_in_a_deployed_run_is_refused_for_want_of_a_trusted_dataset() -> None:
    model = {"n_features": 4, "n_classes": 3}
    config = parse_config({"model": model, "strategy": {"name": "fedavg", "reducer": {"name": "fltrust"}}})

    with pytest.raises(ConfigError, match="a deployed coordinator cannot hold one yet"):
        plan_deployment(config, run_id="r")


def test_an_attack_section_makes_a_fraction_of_the_simulated_nodes_byzantine() -> None:
    attack = {"name": "alie", "fraction": 0.2, "knowledge": "omniscient"}

    plan = plan_simulation(parse_config({**IRIS_RUN, "data": {"dataset": "iris", "nodes": 10}, "attack": attack}))

    assert plan.attack is not None
    assert len(plan.attack.attackers) == 2 and plan.attack.knowledge == "omniscient"
    assert plan.attack.attack.options["z"] > 0  # filled in from the run's 10 nodes, 2 of them attacking


def test_an_attack_section_with_no_attackers_runs_clean() -> None:
    attack = {"name": "alie", "fraction": 0.0}

    plan = plan_simulation(parse_config({**IRIS_RUN, "data": {"dataset": "iris", "nodes": 10}, "attack": attack}))

    assert plan.attack is not None and plan.attack.attackers == ()


def test_an_attack_section_may_name_its_nodes() -> None:
    attack = {"name": "sign_flip", "nodes": ["node-001", "node-004"], "scale": 2.0}

    plan = plan_simulation(parse_config({**IRIS_RUN, "data": {"dataset": "iris", "nodes": 10}, "attack": attack}))

    assert plan.attack is not None and plan.attack.attackers == ("node-001", "node-004")


@pytest.mark.parametrize(
    ("attack", "message"),
    [
        ({"name": "sign_flip"}, "exactly one of `fraction`"),
        ({"name": "sign_flip", "fraction": 0.2, "nodes": ["node-001"]}, "exactly one of `fraction`"),
        ({"name": "sign_flip", "nodes": ["node-077"]}, r"names nodes the run does not have: \['node-077'\]"),
        ({"name": "sign_flip", "fraction": 0.2, "scal": 2.0}, r"\[attack\]: unknown option\(s\) scal"),
        ({"name": "ipm", "fraction": 0.1}, "needs at least 2 attackers .* use knowledge = 'own'"),
        ({"name": "ipm", "fraction": 0.2, "knowledge": "everything"}, "knowledge"),
    ],
    ids=["no_attackers", "both", "unknown_node", "unknown_option", "lone_colluder", "knowledge"],
)
def test_a_bad_attack_section_is_refused_with_one_line(attack: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_simulation(parse_config({**IRIS_RUN, "data": {"dataset": "iris", "nodes": 10}, "attack": attack}))


def test_an_attack_section_in_a_deployed_run_is_refused_saying_where_attacks_belong() -> None:
    config = parse_config(
        {"model": {"n_features": 4, "n_classes": 3}, "attack": {"name": "sign_flip", "fraction": 0.1}}
    )

    with pytest.raises(ConfigError, match=r"simulations only.*NODE.toml"):
        plan_deployment(config, run_id="r")
