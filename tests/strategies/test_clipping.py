"""Centered clipping and norm bounding, beyond the shared conformance suite."""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.core.codec import decode, encode
from fedlearn.core.errors import ConfigError, QuorumError, ValidationError
from fedlearn.core.params import ParamSet
from fedlearn.strategies import (
    centered_clipping,
    coordinate_median,
    fedavg,
    krum,
    norm_bound,
    trimmed_mean,
    weighted_mean,
)

from .helpers import HONEST_MEAN, attacked_updates, make_replies, random_model, reduce_arrays

ATTACKS = ["huge", "sign_flip"]


def centre(values: list[float]) -> ParamSet:
    """Centered clipping's state with the centre ``values`` for a one-array model ``w``."""
    return ParamSet({"center/w": np.array(values)})


# Centered clipping ------------------------------------------------------------------------------


def test_centered_clipping_moves_by_at_most_tau_over_n_per_far_update() -> None:
    updates = [np.zeros(3)] * 3 + [np.array([1e6, 0.0, 0.0])]

    result = reduce_arrays(centered_clipping(2.0), updates)

    np.testing.assert_allclose(result, [2.0 / 4, 0.0, 0.0])


def test_centered_clipping_within_tau_of_the_centre_is_the_plain_mean() -> None:
    updates = [np.array([1.0, 2.0]), np.array([3.0, 2.5]), np.array([2.0, 1.5])]

    result = reduce_arrays(centered_clipping(10.0), updates, [1.0, 9.0, 1.0])

    np.testing.assert_allclose(result, [2.0, 2.0])


def test_centered_clipping_starts_from_the_centre_it_is_given() -> None:
    updates = [np.array([5.0, 0.0]), np.array([5.0, 0.0])]

    result = reduce_arrays(centered_clipping(1.0), updates, state=centre([3.0, 0.0]))

    np.testing.assert_allclose(result, [4.0, 0.0])  # one step of at most tau from (3, 0) towards (5, 0)


@pytest.mark.parametrize("attack", ATTACKS)
def test_centered_clipping_from_the_last_aggregate_stays_near_the_honest_mean(attack: str) -> None:
    updates = attacked_updates(attack, honest=10, byzantine=3)
    previous = centre(list(HONEST_MEAN * 0.9))  # last round's aggregate, close to this one's honest mean

    robust = reduce_arrays(centered_clipping(1.0, iterations=3), updates, state=previous)
    mean = reduce_arrays(weighted_mean(), updates)

    assert np.linalg.norm(robust - HONEST_MEAN) < 0.5
    assert np.linalg.norm(mean - HONEST_MEAN) > 5


def test_centered_clipping_more_iterations_get_closer_to_the_honest_updates() -> None:
    updates = attacked_updates("huge", honest=10, byzantine=2)

    once = reduce_arrays(centered_clipping(1.0), updates)
    often = reduce_arrays(centered_clipping(1.0, iterations=20), updates)

    assert np.linalg.norm(often - HONEST_MEAN) < np.linalg.norm(once - HONEST_MEAN) / 2


def test_centered_clipping_streams_only_with_one_iteration() -> None:
    assert (centered_clipping(1.0).streaming, centered_clipping(1.0, iterations=2).streaming) == (True, False)


def test_centered_clipping_initial_state_is_a_zero_centre_per_parameter() -> None:
    params = random_model(0)

    state = centered_clipping(1.0).init_state(params)

    assert state.bitwise_equal(params.zeros_like().with_prefix("center/"))


def test_centered_clipping_next_centre_is_the_rounds_aggregate() -> None:
    strategy = fedavg(reducer=centered_clipping(0.5))
    params = random_model(0)

    update = strategy.aggregate(
        params,
        strategy.init_state(params),
        make_replies(params, count=4, seed=1),
        num_nodes=4,
        rng=np.random.default_rng(0),
    )

    assert (params + update.state.select("reducer/center/")).bitwise_equal(update.params)  # fedavg's step is the update


def test_centered_clipping_rounds_resume_bit_identically_from_a_decoded_checkpoint() -> None:
    strategy = fedavg(reducer=centered_clipping(0.5, iterations=2))
    params = random_model(0)
    state = strategy.init_state(params)
    for r in range(2):
        update = strategy.aggregate(
            params, state, make_replies(params, count=4, seed=r), num_nodes=4, rng=np.random.default_rng(r)
        )
        params, state = update.params, update.state

    straight = strategy.aggregate(
        params, state, make_replies(params, count=4, seed=9), num_nodes=4, rng=np.random.default_rng(9)
    )
    resumed = strategy.aggregate(
        decode(encode(params)),
        decode(encode(state)),
        make_replies(params, count=4, seed=9),
        num_nodes=4,
        rng=np.random.default_rng(9),
    )

    assert resumed.params.bitwise_equal(straight.params)
    assert resumed.state.bitwise_equal(straight.state)


def test_centered_clipping_state_for_another_model_raises_validation_error() -> None:
    with pytest.raises(ValidationError, match=r"state under 'center/' does not match the model: missing \['w'\]"):
        reduce_arrays(centered_clipping(1.0), [np.zeros(2)], state=ParamSet({"center/v": np.zeros(2)}))


def test_centered_clipping_without_updates_raises_quorum_error() -> None:
    with pytest.raises(QuorumError, match=r"centered_clipping needs at least 1 update\(s\) of weight > 0; got 0"):
        reduce_arrays(centered_clipping(1.0), [np.zeros(2)], [0.0])


# Norm bounding ----------------------------------------------------------------------------------


def test_norm_bound_scales_a_long_update_down_to_the_bound() -> None:
    result = reduce_arrays(norm_bound(weighted_mean(), 2.0), [np.array([3.0, 4.0])])

    np.testing.assert_allclose(result, [1.2, 1.6])


def test_norm_bound_passes_updates_within_the_bound_unchanged() -> None:
    updates = [np.array([0.5, -1.0]), np.array([1.0, 0.25])]

    bounded = reduce_arrays(norm_bound(weighted_mean(), 2.0), updates, [1.0, 3.0])
    plain = reduce_arrays(weighted_mean(), updates, [1.0, 3.0])

    np.testing.assert_array_equal(bounded, plain)


def test_norm_bound_caps_what_a_scaled_up_update_can_move_the_mean() -> None:
    updates = [HONEST_MEAN] * 9 + [-100.0 * HONEST_MEAN]  # model replacement: one update scaled to win

    bounded = reduce_arrays(norm_bound(weighted_mean(), float(np.linalg.norm(HONEST_MEAN))), updates)
    plain = reduce_arrays(weighted_mean(), updates)

    np.testing.assert_allclose(bounded, 0.8 * HONEST_MEAN)  # (9 - 1) / 10 of the honest update
    assert np.linalg.norm(plain - HONEST_MEAN) > 5 * np.linalg.norm(HONEST_MEAN)


def test_norm_bound_keeps_integer_parameters_integral() -> None:
    result = reduce_arrays(norm_bound(weighted_mean(), 5.0), [np.array([30, 40], dtype=np.int64)])

    assert result.dtype == np.int64
    np.testing.assert_array_equal(result, [3, 4])


@pytest.mark.parametrize(
    ("reducer", "streaming"),
    [(weighted_mean(), True), (coordinate_median(), False), (centered_clipping(1.0), True)],
    ids=["weighted_mean", "coordinate_median", "centered_clipping"],
)
def test_norm_bound_streams_when_its_reducer_does(reducer, streaming: bool) -> None:
    assert norm_bound(reducer, 1.0).streaming is streaming


def test_norm_bound_passes_its_reducers_state_through() -> None:
    params = random_model(0)
    inner = centered_clipping(1.0)

    assert norm_bound(inner, 1.0).init_state(params).bitwise_equal(inner.init_state(params))


def test_norm_bound_declares_its_reducers_quorum() -> None:
    assert norm_bound(krum(2), 1.0).min_replies == 7


# Hyper-parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: centered_clipping(0.0), r"`tau` must be in \(0, inf\); got 0.0"),
        (lambda: centered_clipping(1.0, iterations=0), "`iterations` must be an integer >= 1; got 0"),
        (lambda: norm_bound(weighted_mean(), -1.0), r"`max_norm` must be in \(0, inf\); got -1.0"),
        (lambda: norm_bound(trimmed_mean, 1.0), "`reducer` must implement the Reducer or RoundReducer protocol"),
    ],
    ids=["tau_zero", "iterations_zero", "max_norm_negative", "reducer_not_built"],
)
def test_clipping_bad_hyper_parameter_raises_config_error_naming_it(build, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()


# -- worker momentum --------------------------------------------------------------------------------


def test_centered_clipping_with_momentum_asks_every_node_for_it_even_behind_a_wrapper() -> None:
    from fedlearn.core.messages import CLIENT_MOMENTUM_KEY
    from fedlearn.strategies import centered_clipping, fedavg, norm_bound

    plain = fedavg(reducer=centered_clipping(1.0))
    asked = fedavg(reducer=norm_bound(centered_clipping(1.0, momentum=0.9), 10.0))

    assert CLIENT_MOMENTUM_KEY not in plain.client_config
    assert asked.client_config[CLIENT_MOMENTUM_KEY] == 0.9


def test_a_reducer_table_sets_momentum_and_refuses_beta_of_one() -> None:
    from fedlearn.core.errors import ConfigError
    from fedlearn.core.messages import CLIENT_MOMENTUM_KEY
    from fedlearn.strategies import build_strategy

    strategy = build_strategy("fedavg", reducer={"name": "centered_clipping", "tau": 1.0, "momentum": 0.9})

    assert strategy.client_config[CLIENT_MOMENTUM_KEY] == 0.9
    with pytest.raises(ConfigError, match="momentum"):
        build_strategy("fedavg", reducer={"name": "centered_clipping", "tau": 1.0, "momentum": 1.0})
