"""The run config's model declaration (its feature names travel to nodes and must agree with its shape)
and its [strategy.reducer] table (a robust reducer, FLTrust's trusted data in a simulation)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedlearn.client.trusted import TrustedModel
from fedlearn.config import RunConfig, engine_config, parse_config
from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import FEATURES_KEY, Reply
from fedlearn.data.datasets import load_dataset
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


def _fltrust_run(trusted_dataset: str | None = "root", n_features: int = 4) -> RunConfig:
    reducer = {"name": "fltrust", **({"trusted_dataset": trusted_dataset} if trusted_dataset else {})}
    model = {"n_features": n_features, "n_classes": 3}
    return parse_config({"model": model, "client": {"learning_rate": 0.1},
                         "strategy": {"name": "fedavg", "reducer": reducer}})  # fmt: skip


def test_fltrust_on_a_coordinator_without_trusted_data_is_refused_saying_how_to_give_it_some() -> None:
    with pytest.raises(ConfigError, match="holds none: start it with --trusted-data FILE"):
        plan_deployment(_fltrust_run(), run_id="r")


def test_fltrust_on_a_coordinator_trains_on_the_trusted_dataset_the_run_names() -> None:
    iris = load_dataset("iris")

    plan = plan_deployment(_fltrust_run(), run_id="r", trusted={"root": iris.subset(np.arange(30))})

    params = plan.learner.init_params(0)
    state = plan.strategy.init_state(params)
    honest = params.map(lambda a: a + 0.01)
    update = plan.strategy.aggregate(params, state, [Reply(node_id="n", kind="fit", round=1, params=honest,
                                                           num_examples=10)], num_nodes=1,
                                     rng=np.random.default_rng(0))  # fmt: skip
    assert update.params.spec() == params.spec()


@pytest.mark.parametrize(
    ("name", "n_features", "message"),
    [("other", 4, r"must name one of the coordinator's trusted datasets \['root'\]; got 'other'"),
     ("root", 5, "has 4 features but \\[model\\] declares 5")],
)  # fmt: skip
def test_fltrust_naming_a_wrong_trusted_dataset_is_refused(name: str, n_features: int, message: str) -> None:
    iris = load_dataset("iris")

    with pytest.raises(ConfigError, match=message):
        plan_deployment(_fltrust_run(name, n_features), run_id="r", trusted={"root": iris})


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
