"""The shared SGD loop: config parsing, the minibatch schedule, FedProx and SCAFFOLD arithmetic."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from fedlearn.client.local_sgd import CLIENT_CONTROL_KEY, LocalConfig, batch_indices, local_sgd
from fedlearn.core.errors import ConfigError, TrainerError
from fedlearn.core.messages import CONTROL_DELTA_PREFIX, CONTROL_PREFIX
from fedlearn.core.params import ParamSet

X = np.arange(20, dtype=np.float32).reshape(10, 2)
Y = np.zeros(10, dtype=np.float32)
PARAMS = ParamSet({"w": np.array([1.0, -1.0], dtype=np.float32), "steps": np.array([0], dtype=np.int64)})


def constant_grad(params: Mapping[str, Any], x: Any, y: Any) -> tuple[float, dict[str, np.ndarray]]:
    """Gradient 1 everywhere, so each step moves w by exactly -lr and results are predictable."""
    return 0.5, {"w": np.ones(2, dtype=np.float32)}


def config(**values: Any) -> LocalConfig:
    return LocalConfig.from_config({"seed": 0, **values}, learning_rate=0.1)


def test_local_config_defaults_follow_the_trainer_protocol() -> None:
    local = LocalConfig.from_config({}, learning_rate=0.3)
    assert (local.local_epochs, local.local_steps, local.batch_size, local.learning_rate) == (1, 0, 32, 0.3)
    assert (local.seed, local.proximal_mu, local.scaffold) == (None, 0.0, False)


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("batch_size", 0, "`batch_size` must be an integer >= 1; got 0"),
        ("batch_size", 2.5, "`batch_size` must be an integer >= 1; got 2.5"),
        ("local_epochs", True, "`local_epochs` must be an integer >= 1; got True"),
        ("local_steps", -1, "`local_steps` must be an integer >= 0"),
        ("learning_rate", 0.0, "`learning_rate` must be in (0, inf); got 0.0"),
        ("learning_rate", "fast", "`learning_rate` must be a number in (0, inf); got 'fast'"),
        ("proximal_mu", -1.0, r"`proximal_mu` must be in \[0, inf); got -1.0"),
        ("scaffold", 1, "`scaffold` must be true or false; got 1"),
    ],
)
def test_local_config_rejects_bad_values_naming_key_and_value(key: str, value: Any, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        LocalConfig.from_config({key: value}, learning_rate=0.1)


def test_local_config_ignores_keys_it_does_not_know() -> None:
    assert LocalConfig.from_config({"server_lr": 1.0}, learning_rate=0.1).batch_size == 32


def test_batch_indices_local_steps_runs_across_epochs() -> None:
    batches = list(batch_indices(10, config(local_steps=7, batch_size=4), np.random.default_rng(0)))
    assert len(batches) == 7
    assert all(1 <= len(b) <= 4 for b in batches)


def test_batch_indices_epochs_visit_every_row_once_per_epoch() -> None:
    batches = list(batch_indices(10, config(local_epochs=3, batch_size=4), np.random.default_rng(0)))
    assert [len(b) for b in batches] == [4, 4, 2] * 3
    assert np.array_equal(np.bincount(np.concatenate(batches)), np.full(10, 3))


def test_batch_indices_empty_node_is_a_trainer_error() -> None:
    with pytest.raises(TrainerError, match="no training examples"):
        list(batch_indices(0, config(), np.random.default_rng(0)))


def test_local_sgd_takes_k_steps_of_learning_rate() -> None:
    result = local_sgd(PARAMS, X, Y, loss_and_grad=constant_grad, config=config(local_steps=3), state={})
    np.testing.assert_allclose(result.params["w"], PARAMS["w"] - 0.3, rtol=1e-6)
    assert result.params["steps"].dtype == np.int64  # integer arrays ride along untouched
    assert result.metrics == {"loss": 0.5}


def test_local_sgd_keeps_float32_in_float32() -> None:
    result = local_sgd(PARAMS, X, Y, loss_and_grad=constant_grad, config=config(), state={})
    assert result.params["w"].dtype == np.float32


def test_local_sgd_proximal_term_pulls_towards_the_global_model() -> None:
    # w moves off the global model by -lr * 1 per step, and the proximal term pulls it back:
    # d_{t+1} = d_t - lr * (1 + mu * d_t), a fixed point at d = -1 / mu.
    local = config(local_steps=200, proximal_mu=2.0)
    result = local_sgd(PARAMS, X, Y, loss_and_grad=constant_grad, config=local, state={})
    np.testing.assert_allclose(result.params["w"] - PARAMS["w"], -0.5, rtol=1e-4)


def test_local_sgd_scaffold_option_two_control_variate() -> None:
    c = ParamSet({"w": np.array([0.5, 0.5], dtype=np.float32), "steps": np.zeros(1, dtype=np.int64)})
    state: dict[str, ParamSet] = {}
    local = config(local_steps=4, scaffold=True)
    result = local_sgd(
        PARAMS, X, Y, loss_and_grad=constant_grad, config=local, state=state, extras=c.with_prefix(CONTROL_PREFIX)
    )
    # Corrected gradient g - c_i + c = 1.5, so 4 steps of lr 0.1 move w by -0.6.
    np.testing.assert_allclose(result.params["w"], PARAMS["w"] - 0.6, rtol=1e-6)
    # c_i+ = c_i - c + (x - y) / (K lr) = 0 - 0.5 + 0.6 / 0.4 = 1.0
    np.testing.assert_allclose(state[CLIENT_CONTROL_KEY]["w"], [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(result.extras[CONTROL_DELTA_PREFIX + "w"], [1.0, 1.0], rtol=1e-6)
    assert not result.extras[CONTROL_DELTA_PREFIX + "steps"].any()


def test_local_sgd_scaffold_uses_the_stored_client_variate() -> None:
    state = {CLIENT_CONTROL_KEY: ParamSet({"w": np.full(2, 1.0, np.float32), "steps": np.zeros(1, np.int64)})}
    c = PARAMS.zeros_like().with_prefix(CONTROL_PREFIX)
    local = config(local_steps=2, scaffold=True)
    result = local_sgd(PARAMS, X, Y, loss_and_grad=constant_grad, config=local, state=state, extras=c)
    # Corrected gradient 1 - 1 + 0 = 0: the model stays put and c_i+ = 1 - 0 + 0 = 1 (delta 0).
    assert result.params.bitwise_equal(PARAMS)
    assert not result.extras[CONTROL_DELTA_PREFIX + "w"].any()


def test_local_sgd_scaffold_without_control_variate_is_a_trainer_error() -> None:
    with pytest.raises(TrainerError, match="task extras lack scaffold/c/"):
        local_sgd(PARAMS, X, Y, loss_and_grad=constant_grad, config=config(scaffold=True), state={})


def test_local_sgd_scaffold_stale_client_variate_is_a_trainer_error() -> None:
    state = {CLIENT_CONTROL_KEY: ParamSet({"w": np.zeros(3, np.float32)})}
    extras = PARAMS.zeros_like().with_prefix(CONTROL_PREFIX)
    with pytest.raises(TrainerError, match="clear the node state"):
        local_sgd(PARAMS, X, Y, loss_and_grad=constant_grad, config=config(scaffold=True), state=state, extras=extras)


def test_local_sgd_missing_gradient_is_a_trainer_error_naming_it() -> None:
    with pytest.raises(TrainerError, match=r"missing \['w'\]"):
        local_sgd(PARAMS, X, Y, loss_and_grad=lambda p, x, y: (0.0, {}), config=config(), state={})


def test_local_sgd_wrong_gradient_shape_is_a_trainer_error() -> None:
    def bad(params: Mapping[str, Any], x: Any, y: Any) -> tuple[float, dict[str, np.ndarray]]:
        return 0.0, {"w": np.ones(3, dtype=np.float32)}

    with pytest.raises(TrainerError, match=r"'w' has shape \(3,\); expected \(2,\)"):
        local_sgd(PARAMS, X, Y, loss_and_grad=bad, config=config(), state={})


def test_local_sgd_without_seed_still_trains() -> None:
    local = LocalConfig.from_config({}, learning_rate=0.1)
    result = local_sgd(PARAMS, X, Y, loss_and_grad=constant_grad, config=local, state={})
    np.testing.assert_allclose(result.params["w"], PARAMS["w"] - 0.1, rtol=1e-6)


def test_local_sgd_proximal_step_that_would_diverge_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"`proximal_mu` \* `learning_rate` must be < 2"):
        local_sgd(PARAMS, X, Y, loss_and_grad=constant_grad, config=config(proximal_mu=25.0), state={})


def test_work_fraction_scales_the_local_steps_and_keeps_at_least_one() -> None:
    assert config(local_epochs=2, batch_size=10).num_steps(100) == 20
    assert config(local_epochs=2, batch_size=10, work_fraction=0.25).num_steps(100) == 5
    assert config(local_steps=7, work_fraction=0.01).num_steps(100) == 1
    with pytest.raises(ConfigError, match=r"`work_fraction` must be in \(0, 1\]; got 0"):
        config(work_fraction=0)
