"""A node refuses a run whose model or declared features do not fit its data, in one short line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedlearn.client import NodeApp, builtin_learner
from fedlearn.client.contract import DataContract
from fedlearn.core.messages import FEATURES_KEY, Task
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import Dataset
from fedlearn.engine import Engine, EngineConfig
from fedlearn.simulation.inprocess import InProcessFleet
from fedlearn.strategies import fedavg

NAMES = ("age", "bmi", "bp")


def _data(n_features: int = 3, names: tuple[str, ...] = NAMES) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(x=rng.normal(size=(20, n_features)), y=rng.integers(0, 2, 20), n_classes=2, feature_names=names)


def _contract(data: Dataset) -> DataContract:
    learner = builtin_learner("numpy.softmax", data)
    return DataContract(param_spec=learner.init_params(0).spec(), feature_names=data.feature_names)


def _task(n_features: int = 3, features: object = None) -> Task:
    model = builtin_learner("numpy.softmax", _data(n_features, tuple(f"f{i}" for i in range(n_features))))
    config = {} if features is None else {FEATURES_KEY: features if isinstance(features, str) else json.dumps(features)}
    return Task(kind="fit", round=1, params=model.init_params(0), config=config)


def test_a_fitting_task_is_accepted() -> None:
    assert _contract(_data()).refusal(_task(features=list(NAMES))) is None


def test_a_model_for_another_number_of_features_is_refused_naming_the_shapes() -> None:
    refusal = _contract(_data()).refusal(_task(n_features=4))

    assert refusal is not None and len(refusal) < 200
    assert "parameter 'weight' is (4, 2) float32, this node's data needs (3, 2) float32" in refusal


@pytest.mark.parametrize(
    ("features", "fragment"),
    [
        (["age", "bmi", "weight"], "columns are not the run's features: missing ['weight'], unexpected ['bp']"),
        (["bmi", "age", "bp"], "position 0 is 'age' here and 'bmi' in the run"),
        ("not json", "is not a JSON list of names"),
        ('{"age": 1}', "must be a JSON list of names"),
    ],
)
def test_declared_features_that_are_not_the_nodes_columns_are_refused(features: object, fragment: str) -> None:
    refusal = _contract(_data()).refusal(_task(features=features))

    assert refusal is not None and fragment in refusal


def test_a_node_without_column_names_refuses_a_run_that_declares_them() -> None:
    refusal = _contract(_data(names=())).refusal(_task(features=list(NAMES)))

    assert refusal is not None and "no column names" in refusal


def test_other_task_kinds_are_not_checked() -> None:
    assert _contract(_data()).refusal(Task(kind="analytics.schema", round=1)) is None


def test_a_run_with_the_wrong_model_shape_fails_with_each_nodes_one_line_reason() -> None:
    data = _data()
    learner = builtin_learner("numpy.softmax", data)
    fleet = InProcessFleet(
        ["a", "b"], lambda node: NodeApp(node_id=node, trainer=learner.trainer(data), contract=_contract(data))
    )
    wrong = builtin_learner("numpy.softmax", _data(4, ("a", "b", "c", "d"))).init_params(0)
    engine = Engine(fleet, fedavg(), EngineConfig(rounds=1, seed=0, min_reply_fraction=0))

    with pytest.raises(Exception, match=r"0 of 2 nodes gave a valid reply.*a: the run's model does not fit"):
        engine.run(engine.initial_state(wrong))


def test_node_app_answers_a_refused_task_with_an_error_reply_not_an_exception() -> None:
    data = _data()
    node = NodeApp(node_id="n", trainer=builtin_learner("numpy.softmax", data).trainer(data), contract=_contract(data))

    reply = node.handle(_task(n_features=4))

    assert reply.error is not None and reply.error.startswith("the run's model does not fit")
    assert reply.params == ParamSet()
