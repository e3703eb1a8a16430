"""The shared suite every trainer adapter passes; a new adapter joins with one line in ADAPTERS."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from fedlearn.client import (
    Learner,
    MLPLearner,
    NodeApp,
    SGDLearner,
    Trainer,
    linear_regression,
    mlp_classifier,
    softmax_regression,
    torch_mlp,
)
from fedlearn.client.local_sgd import CLIENT_CONTROL_KEY
from fedlearn.core.codec import decode, encode
from fedlearn.core.messages import CONTROL_DELTA_PREFIX, CONTROL_PREFIX, EVALUATE, FIT, Task
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import Dataset
from tests.client.conftest import tiny_classification, tiny_regression


@dataclass(frozen=True)
class Adapter:
    build: Callable[[], Learner]
    data: Callable[[], Dataset]
    gradient: bool = False  # trains through a gradient loop, so FedProx and SCAFFOLD apply
    torch: bool = False  # needs the torch extra: marked, and skipped when torch is missing

    def make(self) -> Learner:
        if self.torch:
            pytest.importorskip("torch")
        return self.build()


def tiny_binary() -> Dataset:
    return tiny_classification(classes=2)


# One line per adapter.
CASES = {
    "numpy.softmax": Adapter(lambda: softmax_regression(5, 3), tiny_classification, gradient=True),
    "numpy.linear": Adapter(lambda: linear_regression(5), tiny_regression, gradient=True),
    "numpy.mlp": Adapter(lambda: mlp_classifier(5, 3, hidden=(8,)), tiny_classification, gradient=True),
    "sklearn.sgd": Adapter(lambda: SGDLearner(n_features=5, n_classes=3), tiny_classification),
    "sklearn.sgd-regression": Adapter(lambda: SGDLearner(n_features=5, task="regression"), tiny_regression),
    "sklearn.sgd-binary": Adapter(lambda: SGDLearner(n_features=5, n_classes=2), tiny_binary),
    "sklearn.mlp": Adapter(lambda: MLPLearner(n_features=5, n_classes=3, hidden=(8,)), tiny_classification),
    "sklearn.mlp-binary": Adapter(lambda: MLPLearner(n_features=5, n_classes=2, hidden=(8,)), tiny_binary),
    "torch.mlp": Adapter(lambda: torch_mlp(5, 3, hidden=(8,)), tiny_classification, gradient=True, torch=True),
}


def _params(gradient_only: bool = False) -> list[Any]:
    return [
        pytest.param(case, id=name, marks=[pytest.mark.torch] if case.torch else [])
        for name, case in CASES.items()
        if case.gradient or not gradient_only
    ]


ADAPTERS = _params()
GRADIENT_ADAPTERS = _params(gradient_only=True)

CONFIG = {"local_epochs": 2, "batch_size": 16, "seed": 7}


def _setup(adapter: Adapter) -> tuple[Learner, Trainer, ParamSet]:
    learner = adapter.make()
    return learner, learner.trainer(adapter.data()), learner.init_params(3)


def _scaffold_extras(params: ParamSet, scale: float) -> ParamSet:
    return params.map(lambda a: np.full_like(a, scale)).with_prefix(CONTROL_PREFIX)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_learner_and_trainer_satisfy_protocols(adapter: Adapter) -> None:
    learner, trainer, _ = _setup(adapter)
    assert isinstance(learner, Learner)
    assert isinstance(trainer, Trainer)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_init_params_same_seed_gives_same_bytes(adapter: Adapter) -> None:
    learner = adapter.make()
    assert learner.init_params(11).bitwise_equal(learner.init_params(11))


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_fit_returns_params_with_the_given_spec(adapter: Adapter) -> None:
    _, trainer, params = _setup(adapter)
    result = trainer.fit(params, CONFIG, {})
    assert result.params.spec() == params.spec()
    assert result.num_examples == len(adapter.data())
    assert result.params.is_finite()


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_fit_moves_the_params(adapter: Adapter) -> None:
    _, trainer, params = _setup(adapter)
    assert not trainer.fit(params, CONFIG, {}).params.bitwise_equal(params)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_fit_same_seed_is_bit_identical_across_trainers(adapter: Adapter) -> None:
    learner, trainer, params = _setup(adapter)
    first = trainer.fit(params, CONFIG, {})
    second = learner.trainer(adapter.data()).fit(params, CONFIG, {})
    assert first.params.bitwise_equal(second.params)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_fit_different_seed_shuffles_differently(adapter: Adapter) -> None:
    _, trainer, params = _setup(adapter)
    first = trainer.fit(params, CONFIG, {})
    other = trainer.fit(params, {**CONFIG, "seed": 8}, {})
    assert not first.params.bitwise_equal(other.params)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_fit_result_is_not_changed_by_later_fits(adapter: Adapter) -> None:
    _, trainer, params = _setup(adapter)
    result = trainer.fit(params, CONFIG, {})
    digest = result.params.digest()
    trainer.fit(result.params, {**CONFIG, "seed": 9}, {})
    trainer.evaluate(params, {})
    assert result.params.digest() == digest


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_fit_and_evaluate_never_mutate_the_input(adapter: Adapter) -> None:
    _, trainer, params = _setup(adapter)
    digest = params.digest()
    trainer.fit(params, CONFIG, {})
    trainer.evaluate(params, {})
    assert params.digest() == digest


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_evaluate_returns_finite_loss_and_example_count(adapter: Adapter) -> None:
    _, trainer, params = _setup(adapter)
    result = trainer.evaluate(params, {})
    assert np.isfinite(result.loss)
    assert result.num_examples == len(adapter.data())
    assert all(np.isfinite(v) for v in result.metrics.values())


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_training_lowers_the_local_loss(adapter: Adapter) -> None:
    _, trainer, params = _setup(adapter)
    trained = trainer.fit(params, {**CONFIG, "local_epochs": 10}, {}).params
    assert trainer.evaluate(trained, {}).loss < trainer.evaluate(params, {}).loss


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_fit_result_survives_the_codec(adapter: Adapter) -> None:
    _, trainer, params = _setup(adapter)
    result = trainer.fit(params, CONFIG, {})
    received = decode(encode(result.params))
    assert received.bitwise_equal(result.params)
    again = trainer.fit(received, CONFIG, {})  # a decoded (read-only) set trains like any other
    assert again.params.bitwise_equal(trainer.fit(result.params, CONFIG, {}).params)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_node_app_answers_fit_and_evaluate(adapter: Adapter) -> None:
    _, trainer, params = _setup(adapter)
    app = NodeApp(node_id="n0", trainer=trainer)
    fit = app.handle(Task(kind=FIT, round=1, params=params, config=CONFIG))
    evaluation = app.handle(Task(kind=EVALUATE, round=1, params=fit.params))
    assert fit.ok, fit.error
    assert evaluation.ok, evaluation.error
    assert "loss" in evaluation.metrics


@pytest.mark.parametrize("adapter", GRADIENT_ADAPTERS)
def test_fedprox_large_mu_keeps_params_near_global(adapter: Adapter) -> None:
    _, trainer, params = _setup(adapter)
    config = {**CONFIG, "local_epochs": 10, "learning_rate": 0.1}
    free = (trainer.fit(params, config, {}).params - params).l2_norm()
    # mu * lr = 1 is the strongest pull plain SGD can take without overshooting the global model.
    held = (trainer.fit(params, {**config, "proximal_mu": 10.0}, {}).params - params).l2_norm()
    assert held < 0.25 * free


@pytest.mark.parametrize("adapter", GRADIENT_ADAPTERS)
def test_scaffold_returns_delta_c_of_the_params_spec_and_stores_c_i(adapter: Adapter) -> None:
    _, trainer, params = _setup(adapter)
    state: dict[str, ParamSet] = {}
    result = trainer.fit(params, {**CONFIG, "scaffold": True}, state, extras=_scaffold_extras(params, 0.01))
    delta = result.extras.select(CONTROL_DELTA_PREFIX)
    assert set(result.extras) == {CONTROL_DELTA_PREFIX + k for k in params}
    assert delta.spec() == params.spec()
    assert state[CLIENT_CONTROL_KEY].spec() == params.spec()
    assert delta.bitwise_equal(state[CLIENT_CONTROL_KEY] - params.zeros_like())  # c_i started at zero


@pytest.mark.parametrize("adapter", GRADIENT_ADAPTERS)
def test_scaffold_state_survives_the_codec(adapter: Adapter) -> None:
    _, trainer, params = _setup(adapter)
    extras = _scaffold_extras(params, 0.01)
    config = {**CONFIG, "scaffold": True}
    state: dict[str, ParamSet] = {}
    trainer.fit(params, config, state, extras=extras)
    restored = {key: decode(encode(value)) for key, value in state.items()}
    expected = trainer.fit(params, config, state, extras=extras)
    got = trainer.fit(params, config, restored, extras=extras)
    assert got.params.bitwise_equal(expected.params)
    assert got.extras.bitwise_equal(expected.extras)
