"""``trusted_model``: a learner trained on the coordinator's trusted data, as FLTrust's server model."""

from __future__ import annotations

import numpy as np

from fedlearn.client import builtin_learner, trusted_model
from fedlearn.data.datasets import load_dataset
from fedlearn.strategies import ServerModel


def test_trusted_model_trains_from_the_global_model() -> None:
    data = load_dataset("iris")
    learner = builtin_learner("numpy.softmax", data)
    params = learner.init_params(0)

    trained = trusted_model(learner, data, {"local_epochs": 1})(params, np.random.default_rng(0))

    assert trained.spec() == params.spec()
    assert not trained.bitwise_equal(params)


def test_trusted_model_same_generator_seed_gives_the_same_model() -> None:
    data = load_dataset("iris")
    learner = builtin_learner("numpy.softmax", data)
    server_model = trusted_model(learner, data, {"local_epochs": 1, "batch_size": 8})
    params = learner.init_params(0)

    first = server_model(params, np.random.default_rng(5))
    again = server_model(params, np.random.default_rng(5))
    other = server_model(params, np.random.default_rng(6))

    assert first.bitwise_equal(again)
    assert not first.bitwise_equal(other)  # the fit's shuffle follows the round's generator


def test_trusted_model_is_a_server_model() -> None:
    data = load_dataset("iris")

    assert isinstance(trusted_model(builtin_learner("numpy.softmax", data), data), ServerModel)
