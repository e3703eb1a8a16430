"""The NumPy function adapter and its built-in models."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest

from fedlearn.client.numpy_trainer import (
    NumpyLearner,
    linear_loss_and_grad,
    linear_regression,
    mlp_classifier,
    mlp_loss_and_grad,
    softmax_loss_and_grad,
    softmax_regression,
)
from fedlearn.core.errors import ConfigError, TrainerError
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import Dataset
from tests.client.conftest import digits, iid_parts, run_fedavg, tiny_classification, tiny_regression


def numeric_grad(fn: Callable[..., tuple[float, Any]], params: dict[str, np.ndarray], x: Any, y: Any) -> dict:
    out = {}
    for name, array in params.items():
        grad = np.zeros_like(array)
        for i in np.ndindex(array.shape):
            old = array[i]
            array[i] = old + 1e-6
            up = fn(params, x, y)[0]
            array[i] = old - 1e-6
            down = fn(params, x, y)[0]
            array[i] = old
            grad[i] = (up - down) / 2e-6
        out[name] = grad
    return out


@pytest.mark.parametrize(
    ("fn", "params", "data"),
    [
        (
            softmax_loss_and_grad,
            {"weight": np.random.default_rng(0).standard_normal((5, 3)), "bias": np.array([0.1, -0.2, 0.3])},
            tiny_classification(rows=8),
        ),
        (
            linear_loss_and_grad,
            {"weight": np.random.default_rng(1).standard_normal(5), "bias": np.array([0.2])},
            tiny_regression(rows=8),
        ),
        (
            mlp_loss_and_grad,
            {
                "weight_0": np.random.default_rng(2).standard_normal((5, 4)),
                "bias_0": np.random.default_rng(3).standard_normal(4),
                "weight_1": np.random.default_rng(4).standard_normal((4, 6)),
                "bias_1": np.random.default_rng(5).standard_normal(6),
                "weight_2": np.random.default_rng(6).standard_normal((6, 3)),
                "bias_2": np.array([0.1, -0.2, 0.3]),
            },
            tiny_classification(rows=8),
        ),
    ],
    ids=["softmax", "linear", "mlp"],
)
def test_builtin_gradients_match_finite_differences(fn: Any, params: dict, data: Dataset) -> None:
    x = data.x.astype(np.float64)
    _, grads = fn(params, x, data.y)
    expected = numeric_grad(fn, params, x, data.y)
    for name in params:
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-5, atol=1e-7)


def test_softmax_regression_params_are_float32_with_documented_shapes() -> None:
    params = softmax_regression(64, 10).init_params(0)
    assert params.spec() == {"weight": ((64, 10), "<f4"), "bias": ((10,), "<f4")}


def test_softmax_regression_reports_loss_and_accuracy() -> None:
    learner = softmax_regression(5, 3)
    result = learner.trainer(tiny_classification()).evaluate(learner.init_params(0), {})
    assert set(result.metrics) == {"accuracy"}
    assert result.loss == pytest.approx(np.log(3), rel=0.05)  # near-uniform predictions at init


def test_linear_regression_fits_a_linear_target() -> None:
    learner = linear_regression(5, learning_rate=0.05)
    trainer = learner.trainer(tiny_regression(rows=200))
    params = trainer.fit(learner.init_params(0), {"local_epochs": 30, "seed": 0}, {}).params
    result = trainer.evaluate(params, {})
    assert set(result.metrics) == {"mse"}
    assert result.loss < 0.05  # the noise variance is 0.01


def test_learner_rejects_data_with_the_wrong_number_of_features() -> None:
    with pytest.raises(ConfigError, match="has 5 features; this model expects 7"):
        softmax_regression(7, 3).trainer(tiny_classification())


def test_trainer_rejects_data_without_targets() -> None:
    data = Dataset(x=np.zeros((4, 5), dtype=np.float32), n_classes=3)
    with pytest.raises(TrainerError, match="has no targets"):
        softmax_regression(5, 3).trainer(data)


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: softmax_regression(5, 1), "`n_classes` must be an integer >= 2"),
        (lambda: softmax_regression(0, 3), "`n_features` must be an integer >= 1"),
        (lambda: linear_regression(5, learning_rate=-1.0), r"`learning_rate` must be in \(0, inf\)"),
    ],
)
def test_builtin_learners_validate_arguments(call: Callable[[], object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        call()


def test_custom_functions_without_loss_metric_evaluate_through_loss_and_grad() -> None:
    def init(seed: int) -> dict[str, np.ndarray]:
        return {"w": np.zeros(5, dtype=np.float32)}

    def loss_and_grad(params: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, dict]:
        r = x @ params["w"] - y
        return float(np.mean(r**2)), {"w": 2 * x.T @ r / len(r)}

    def metrics(params: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        return {"max_error": float(np.max(np.abs(x @ params["w"] - y)))}

    learner = NumpyLearner(init=init, loss_and_grad=loss_and_grad, metrics=metrics)
    data = tiny_regression()
    assert data.y is not None
    result = learner.trainer(data).evaluate(learner.init_params(0), {})
    assert result.loss == pytest.approx(float(np.mean(data.y**2)), rel=1e-5)
    assert set(result.metrics) == {"max_error"}


@pytest.mark.slow
def test_fedavg_on_iid_digits_matches_centralised_training_within_two_points() -> None:
    train, test = digits()
    learner = softmax_regression(64, 10)
    config = {"local_epochs": 5, "batch_size": 32}
    rounds = 30
    federated = run_fedavg(learner, iid_parts(train, 10, seed=0), rounds=rounds, config=config, seed=0)
    # The same budget of passes over the data, in one place.
    central = learner.trainer(train).fit(learner.init_params(0), {**config, "local_epochs": 5 * rounds, "seed": 0}, {})
    evaluator = learner.trainer(test)
    fed_acc = evaluator.evaluate(federated, {}).metrics["accuracy"]
    central_acc = evaluator.evaluate(central.params, {}).metrics["accuracy"]
    assert central_acc > 0.93
    assert abs(fed_acc - central_acc) <= 0.02


def test_paramset_from_init_is_read_only() -> None:
    params = softmax_regression(5, 3).init_params(0)
    assert isinstance(params, ParamSet)
    assert not params["weight"].flags.writeable


def test_mlp_classifier_params_are_float32_layer_by_layer() -> None:
    params = mlp_classifier(64, 10, hidden=(32, 16)).init_params(0)

    assert params.spec() == {
        "weight_0": ((64, 32), "<f4"), "bias_0": ((32,), "<f4"),
        "weight_1": ((32, 16), "<f4"), "bias_1": ((16,), "<f4"),
        "weight_2": ((16, 10), "<f4"), "bias_2": ((10,), "<f4"),
    }  # fmt: skip


def test_mlp_classifier_learns_the_tiny_blobs() -> None:
    data = tiny_classification(rows=120)
    learner = mlp_classifier(5, 3, hidden=(16,))
    params = learner.init_params(0)
    trainer = learner.trainer(data)
    for seed in range(20):
        params = trainer.fit(params, {"seed": seed, "batch_size": 16}, {}).params

    assert trainer.evaluate(params, {}).metrics["accuracy"] > 0.9
