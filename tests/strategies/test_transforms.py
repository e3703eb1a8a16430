"""Behaviour of each server transform beyond the shared conformance suite."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError, ValidationError
from fedlearn.core.messages import FIT, Reply
from fedlearn.core.params import ParamSet
from fedlearn.strategies import (
    adagrad,
    adam,
    chain,
    clip_by_global_norm,
    fedadagrad,
    fedadam,
    fedyogi,
    momentum,
    sgd,
    yogi,
)
from fedlearn.strategies.base import ServerTransform
from fedlearn.strategies.transforms import Adagrad

RNG = np.random.default_rng(0)
LR, BETA1, BETA2, TAU = 0.1, 0.9, 0.99, 1e-3
# Deltas per round and coordinate. Round 3's small deltas make Yogi's sign(v - delta^2) flip.
DELTAS = [[0.5, -0.1], [0.3, 0.2], [0.001, -0.0005]]


def reference_fedopt(variant: str, deltas: list[list[float]], *, beta1: float) -> list[list[float]]:
    """Algorithm 2 of Reddi et al. 2021, written out in plain Python scalars: the steps per round."""
    m = [0.0] * len(deltas[0])
    v = [TAU**2] * len(deltas[0])
    steps = []
    for delta in deltas:
        for i, d in enumerate(delta):
            m[i] = beta1 * m[i] + (1 - beta1) * d
            if variant == "adam":
                v[i] = BETA2 * v[i] + (1 - BETA2) * d * d
            elif variant == "yogi":
                v[i] = v[i] - (1 - BETA2) * d * d * math.copysign(1.0, v[i] - d * d)
            else:
                v[i] = v[i] + d * d
        steps.append([LR * m[i] / (math.sqrt(v[i]) + TAU) for i in range(len(delta))])
    return steps


def run_strategy_steps(strategy, deltas: list[list[float]]) -> list[np.ndarray]:
    """Run one single-reply round per delta and return the step the model took each round."""
    params = ParamSet({"w": np.array([1.0, -2.0])})
    state = strategy.init_state(params)
    steps = []
    for delta in deltas:
        reply = Reply(node_id="n", kind=FIT, round=1, params=ParamSet({"w": params["w"] + delta}), num_examples=7)
        update = strategy.aggregate(params, state, [reply], num_nodes=1, rng=RNG)
        steps.append(update.params["w"] - params["w"])
        params, state = update.params, update.state
    return steps


def test_fedadam_first_step_matches_the_hand_computed_value() -> None:
    # m = 0.1 * 0.5 = 0.05; v = 0.99 * 1e-6 + 0.01 * 0.25 = 0.00250099; 0.1 * m / (sqrt(v) + 1e-3)
    steps = run_strategy_steps(fedadam(server_learning_rate=LR), [[0.5, -0.1]])

    np.testing.assert_allclose(steps[0], [0.09802019012094845, -0.09050283118522204], rtol=1e-12)


@pytest.mark.parametrize(
    ("build", "variant", "beta1"),
    [
        (lambda: fedadam(server_learning_rate=LR, beta1=BETA1, beta2=BETA2, tau=TAU), "adam", BETA1),
        (lambda: fedyogi(server_learning_rate=LR, beta1=BETA1, beta2=BETA2, tau=TAU), "yogi", BETA1),
        (lambda: fedadagrad(server_learning_rate=LR, tau=TAU), "adagrad", 0.0),
        (lambda: fedadagrad(server_learning_rate=LR, tau=TAU, beta1=BETA1), "adagrad", BETA1),
    ],
    ids=["fedadam", "fedyogi", "fedadagrad", "fedadagrad_momentum"],
)
def test_fedopt_steps_match_the_papers_algorithm(build, variant: str, beta1: float) -> None:
    steps = run_strategy_steps(build(), DELTAS)

    expected = reference_fedopt(variant, DELTAS, beta1=beta1)
    np.testing.assert_allclose(np.stack(steps), expected, rtol=1e-10, atol=1e-15)


def test_fedyogi_second_moment_shrinks_by_the_new_update_only() -> None:
    params = ParamSet({"w": np.array([0.0])})
    transform = yogi(LR)
    state = transform.init(params).to_dict(writable=True)
    state["v/w"][:] = 1.0

    _, new_state = transform.update(ParamSet({"w": np.array([0.1])}), ParamSet(state), params, RNG)

    np.testing.assert_allclose(new_state["v/w"], [1.0 - 0.01 * 0.01])


@pytest.mark.parametrize(
    ("transform", "dtype", "moment_dtype"),
    [(adam(LR), np.float32, np.float32), (adam(LR), np.float16, np.float32), (adam(LR), np.float64, np.float64)],
    ids=["float32", "float16", "float64"],
)
def test_adaptive_moments_are_float32_or_better(transform: ServerTransform, dtype, moment_dtype) -> None:
    params = ParamSet({"w": np.zeros(3, dtype=dtype)})

    state = transform.init(params)

    assert {state["m/w"].dtype, state["v/w"].dtype} == {np.dtype(moment_dtype)}


@pytest.mark.parametrize("transform", [adam(LR), yogi(LR), adagrad(LR)], ids=["adam", "yogi", "adagrad"])
def test_adaptive_transforms_share_one_state_layout(transform: ServerTransform) -> None:
    params = ParamSet({"w": np.zeros(2)})

    state = transform.init(params)

    assert sorted(state) == ["m/w", "v/w"]
    np.testing.assert_array_equal(state["v/w"], [TAU**2, TAU**2])


def test_adagrad_has_no_beta2() -> None:
    with pytest.raises(TypeError, match="beta2"):
        Adagrad(learning_rate=LR, beta2=0.5)  # type: ignore[call-arg]


def test_adam_state_from_another_model_raises_validation_error() -> None:
    transform = adam(LR)
    state = transform.init(ParamSet({"other": np.zeros(2)}))

    with pytest.raises(ValidationError, match=r"missing \['w'\], unexpected \['other'\]"):
        transform.update(ParamSet({"w": np.zeros(2)}), state, ParamSet({"w": np.zeros(2)}), RNG)


def test_sgd_scales_the_update_by_the_learning_rate() -> None:
    update = ParamSet({"w": np.array([2.0, -4.0], dtype=np.float32)})

    step, _ = sgd(0.25).update(update, ParamSet(), update, RNG)

    np.testing.assert_array_equal(step["w"], np.array([0.5, -1.0], dtype=np.float32))


def test_sgd_rounds_integer_steps() -> None:
    update = ParamSet({"count": np.array([3, 5], dtype=np.int64)})

    step, _ = sgd(0.5).update(update, ParamSet(), update, RNG)

    np.testing.assert_array_equal(step["count"], [2, 2])  # 1.5 and 2.5 round half to even


def test_momentum_accumulates_velocity_across_rounds() -> None:
    params = ParamSet({"w": np.array([0.0])})
    transform = momentum(0.5, beta=0.9)
    update = ParamSet({"w": np.array([1.0])})

    first, state = transform.update(update, transform.init(params), params, RNG)
    second, _ = transform.update(update, state, params, RNG)

    np.testing.assert_allclose([first["w"][0], second["w"][0]], [0.5, 0.5 * 1.9])


def test_nesterov_momentum_steps_with_the_look_ahead_velocity() -> None:
    params = ParamSet({"w": np.array([0.0])})
    transform = momentum(0.5, beta=0.9, nesterov=True)

    step, _ = transform.update(ParamSet({"w": np.array([1.0])}), transform.init(params), params, RNG)

    np.testing.assert_allclose(step["w"], [0.5 * (0.9 * 1.0 + 1.0)])


def test_clip_by_global_norm_scales_a_long_update_to_max_norm() -> None:
    update = ParamSet({"a": np.array([3.0], dtype=np.float32), "b": np.array([4.0])})  # global norm 5

    step, _ = clip_by_global_norm(1.0).update(update, ParamSet(), update, RNG)

    np.testing.assert_allclose([step["a"][0], step["b"][0]], [0.6, 0.8], rtol=1e-6)
    assert step.spec() == update.spec()


def test_clip_by_global_norm_leaves_a_short_update_alone() -> None:
    update = ParamSet({"a": np.array([0.3, 0.4])})

    step, _ = clip_by_global_norm(1.0).update(update, ParamSet(), update, RNG)

    assert step.bitwise_equal(update)


def test_chain_applies_transforms_in_order() -> None:
    update = ParamSet({"w": np.array([30.0, 40.0])})

    step, _ = chain(clip_by_global_norm(5.0), sgd(2.0)).update(update, ParamSet(), update, RNG)

    np.testing.assert_allclose(step["w"], [6.0, 8.0])


def test_chain_prefixes_each_transforms_state_with_its_index() -> None:
    params = ParamSet({"w": np.zeros(2)})

    state = chain(clip_by_global_norm(1.0), momentum(0.1), adam(0.1)).init(params)

    assert sorted(state) == ["1/v/w", "2/m/w", "2/v/w"]


def test_chain_without_transforms_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="`transforms` must hold at least one transform; got none"):
        chain()


def test_chain_of_something_else_raises_config_error_naming_its_position() -> None:
    with pytest.raises(ConfigError, match=r"`transforms\[1\]` must be a server transform .*; got float"):
        chain(sgd(), 0.5)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: sgd(0.0), r"`learning_rate` must be in \(0, inf\); got 0.0"),
        (lambda: sgd(float("nan")), r"`learning_rate` must be in \(0, inf\); got nan"),
        (lambda: momentum(0.1, beta=1.0), r"`beta` must be in \[0, 1\); got 1.0"),
        (lambda: momentum(0.1, nesterov=1), r"`nesterov` must be true or false; got 1 \(int\)"),
        (lambda: adam(-1.0), r"`learning_rate` must be in \(0, inf\); got -1.0"),
        (lambda: adam(0.1, beta1=-0.1), r"`beta1` must be in \[0, 1\); got -0.1"),
        (lambda: yogi(0.1, beta2=1.5), r"`beta2` must be in \[0, 1\); got 1.5"),
        (lambda: adagrad(0.1, tau=0.0), r"`tau` must be in \(0, inf\); got 0.0"),
        (lambda: adagrad("0.1"), r"`learning_rate` must be a number in \(0, inf\); got '0.1' \(str\)"),
        (lambda: clip_by_global_norm(0), r"`max_norm` must be in \(0, inf\); got 0"),
    ],
    ids=["sgd_lr", "sgd_nan", "beta", "nesterov", "adam_lr", "beta1", "beta2", "tau", "lr_string", "max_norm"],
)
def test_transform_bad_hyper_parameter_raises_config_error_naming_it(build, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()
