"""PyTorch adapter: state_dict parameters, buffers, RNG hygiene and the SCAFFOLD/optimizer rules."""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.client.local_sgd import CLIENT_CONTROL_KEY
from fedlearn.client.torch_trainer import TorchLearner, torch_mlp
from fedlearn.core.errors import ConfigError, TrainerError
from fedlearn.core.messages import CONTROL_DELTA_PREFIX, CONTROL_PREFIX
from fedlearn.core.params import ParamSet
from tests.client.conftest import digits, dirichlet_parts, run_fedavg, tiny_classification, tiny_regression

pytest.importorskip("torch")
import torch  # after the skip, so this module is skipped cleanly without torch

pytestmark = pytest.mark.torch


class BatchNormNet(torch.nn.Module):
    """Has buffers (running statistics and an int64 counter) and dropout, unlike the plain MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Dropout(0.3)
        )
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class Regressor(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def test_torch_mlp_params_are_the_float32_state_dict() -> None:
    spec = torch_mlp(5, 3, hidden=(8,)).init_params(0).spec()
    assert spec == {
        "0.weight": ((8, 5), "<f4"),
        "0.bias": ((8,), "<f4"),
        "2.weight": ((3, 8), "<f4"),
        "2.bias": ((3,), "<f4"),
    }


def test_init_params_leaves_the_global_torch_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    torch_mlp(5, 3).init_params(0)
    assert torch.equal(torch.rand(3), expected)


def test_init_params_depends_on_the_seed() -> None:
    learner = torch_mlp(5, 3)
    assert not learner.init_params(0).bitwise_equal(learner.init_params(1))


def test_buffers_are_carried_and_updated_by_fit() -> None:
    learner = TorchLearner(model_fn=BatchNormNet)
    params = learner.init_params(0)
    result = learner.trainer(tiny_classification()).fit(params, {"seed": 0}, {})
    assert result.params.spec() == params.spec()
    assert result.params["body.1.num_batches_tracked"].dtype == np.int64
    assert result.params["body.1.num_batches_tracked"][()] == 2  # 60 rows in batches of 32
    assert not np.array_equal(result.params["body.1.running_mean"], params["body.1.running_mean"])


def test_dropout_is_reproducible_with_the_same_seed() -> None:
    learner = TorchLearner(model_fn=BatchNormNet)
    params = learner.init_params(0)
    first = learner.trainer(tiny_classification()).fit(params, {"seed": 5}, {})
    second = learner.trainer(tiny_classification()).fit(params, {"seed": 5}, {})
    assert first.params.bitwise_equal(second.params)


def test_scaffold_deltas_for_buffers_are_zero() -> None:
    learner = TorchLearner(model_fn=BatchNormNet)
    params = learner.init_params(0)
    extras = params.map(np.ones_like).with_prefix(CONTROL_PREFIX)
    state: dict[str, ParamSet] = {}
    result = learner.trainer(tiny_classification()).fit(params, {"seed": 0, "scaffold": True}, state, extras=extras)
    delta = result.extras.select(CONTROL_DELTA_PREFIX)
    assert not delta["body.1.running_mean"].any()
    assert not delta["body.1.num_batches_tracked"].any()
    assert delta["head.weight"].any()
    assert state[CLIENT_CONTROL_KEY].spec() == params.spec()


@pytest.mark.parametrize(
    "learner", [TorchLearner(model_fn=BatchNormNet, optimizer="adam"), torch_mlp(5, 3, momentum=0.9)]
)
def test_scaffold_needs_plain_sgd(learner: TorchLearner) -> None:
    params = learner.init_params(0)
    extras = params.zeros_like().with_prefix(CONTROL_PREFIX)
    with pytest.raises(ConfigError, match="`scaffold` needs plain SGD"):
        learner.trainer(tiny_classification()).fit(params, {"seed": 0, "scaffold": True}, {}, extras=extras)


def test_regression_defaults_to_mse_and_reports_no_accuracy() -> None:
    learner = TorchLearner(model_fn=Regressor, learning_rate=0.05)
    trainer = learner.trainer(tiny_regression(rows=200))
    params = trainer.fit(learner.init_params(0), {"local_epochs": 20, "seed": 0}, {}).params
    result = trainer.evaluate(params, {})
    assert result.metrics == {}
    assert result.loss < 0.05


def test_params_of_another_model_are_a_trainer_error() -> None:
    with pytest.raises(TrainerError, match="do not match the module's state_dict"):
        torch_mlp(5, 3).trainer(tiny_classification()).fit(torch_mlp(5, 4).init_params(0), {"seed": 0}, {})


def test_learner_validates_arguments() -> None:
    with pytest.raises(ConfigError, match="`optimizer` must be one of"):
        TorchLearner(model_fn=Regressor, optimizer="lbfgs")


@pytest.mark.slow
def test_fedavg_on_non_iid_digits_reaches_ninety_percent() -> None:
    train, test = digits()
    learner = torch_mlp(64, 10)
    params = run_fedavg(learner, dirichlet_parts(train, 20, alpha=0.5, seed=0), rounds=20, config={}, seed=0)
    assert learner.trainer(test).evaluate(params, {}).metrics["accuracy"] >= 0.90


@pytest.mark.parametrize(("num_threads", "expected"), [(1, 1), (None, 2)])
def test_building_a_trainer_applies_num_threads(num_threads: int | None, expected: int) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        torch_mlp(5, 3, num_threads=num_threads).trainer(tiny_classification())
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)
