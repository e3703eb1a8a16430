"""FLTrust, beyond the shared conformance suite."""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError, QuorumError, ValidationError
from fedlearn.core.params import ParamSet
from fedlearn.strategies import fltrust, weighted_mean

from .helpers import HONEST_MEAN, attacked_updates, reduce_arrays


def server_moves_by(step: np.ndarray):
    """A server model that adds ``step`` to the global model, as training on trusted data would."""

    def server_model(params: ParamSet, rng: np.random.Generator) -> ParamSet:
        return ParamSet({"w": params["w"] + step})

    return server_model


def test_fltrust_gives_zero_weight_to_an_update_opposite_to_the_servers() -> None:
    reducer = fltrust(server_moves_by(np.array([1.0, 0.0])))

    result = reduce_arrays(reducer, [np.array([2.0, 0.0]), np.array([-100.0, 0.0])])

    np.testing.assert_allclose(result, [1.0, 0.0])  # only the first counts, rescaled to the server's norm


def test_fltrust_rescales_each_update_to_the_server_updates_norm() -> None:
    reducer = fltrust(server_moves_by(np.array([2.0, 0.0])))

    result = reduce_arrays(reducer, [np.array([0.5, 0.5])])

    np.testing.assert_allclose(result, [np.sqrt(2), np.sqrt(2)])


def test_fltrust_weights_updates_by_their_cosine_with_the_server_update() -> None:
    reducer = fltrust(server_moves_by(np.array([1.0, 0.0])))
    along, diagonal = np.array([3.0, 0.0]), np.array([1.0, 1.0])  # cosines 1 and 1/sqrt(2)

    result = reduce_arrays(reducer, [along, diagonal])

    c = 1 / np.sqrt(2)
    np.testing.assert_allclose(result, (np.array([1.0, 0.0]) + c * np.array([c, c])) / (1 + c))


def test_fltrust_ignores_example_counts() -> None:
    reducer = fltrust(server_moves_by(np.array([1.0, 1.0])))
    updates = [np.array([1.0, 0.0]), np.array([0.0, 1.0])]

    light = reduce_arrays(reducer, updates, [1.0, 1.0])
    heavy = reduce_arrays(reducer, updates, [1.0, 1000.0])

    np.testing.assert_array_equal(heavy, light)


def test_fltrust_with_no_trusted_update_leaves_the_model_where_it_is() -> None:
    reducer = fltrust(server_moves_by(np.array([1.0, 0.0])))

    result = reduce_arrays(reducer, [np.array([-1.0, 0.0]), np.array([0.0, 5.0]), np.array([0.0, 0.0])])

    np.testing.assert_array_equal(result, [0.0, 0.0])


def test_fltrust_with_a_zero_server_update_leaves_the_model_where_it_is() -> None:
    reducer = fltrust(server_moves_by(np.zeros(2)))

    result = reduce_arrays(reducer, [np.array([1.0, 0.0])])

    np.testing.assert_array_equal(result, [0.0, 0.0])


@pytest.mark.parametrize("attack", ["huge", "sign_flip"])
def test_fltrust_stays_near_the_honest_mean_even_when_attackers_are_the_majority(attack: str) -> None:
    updates = attacked_updates(attack, honest=5, byzantine=8)
    reducer = fltrust(server_moves_by(HONEST_MEAN + 0.05))

    robust = reduce_arrays(reducer, updates)
    mean = reduce_arrays(weighted_mean(), updates)

    # random huge updates that happen to lean the server's way keep a little weight, rescaled
    assert np.linalg.norm(robust - HONEST_MEAN) < 0.2 * np.linalg.norm(HONEST_MEAN)
    assert np.linalg.norm(mean - HONEST_MEAN) > 5


def test_fltrust_trains_the_server_model_once_a_round_from_the_global_model_with_the_rounds_generator() -> None:
    calls: list[tuple[np.ndarray, float]] = []

    def server_model(params: ParamSet, rng: np.random.Generator) -> ParamSet:
        calls.append((np.array(params["w"]), float(rng.random())))
        return ParamSet({"w": params["w"] + 1})

    reduce_arrays(fltrust(server_model), [np.ones(2)] * 3, seed=5)
    reduce_arrays(fltrust(server_model), [np.ones(2)] * 3, seed=5)

    assert len(calls) == 2
    np.testing.assert_array_equal(calls[0][0], np.zeros(2))
    assert calls[0][1] == calls[1][1]


def test_fltrust_server_model_of_another_shape_raises_validation_error() -> None:
    reducer = fltrust(lambda params, rng: ParamSet({"v": np.zeros(2)}))

    with pytest.raises(ValidationError, match=r"server model does not match the global model: missing \['w'\]"):
        reduce_arrays(reducer, [np.ones(2)])


def test_fltrust_without_updates_raises_quorum_error() -> None:
    with pytest.raises(QuorumError, match=r"fltrust needs at least 1 update\(s\) of weight > 0; got 0"):
        reduce_arrays(fltrust(server_moves_by(np.ones(2))), [np.ones(2)], [0.0])


def test_fltrust_streams() -> None:
    assert fltrust(server_moves_by(np.ones(2))).streaming is True


def test_fltrust_server_model_that_is_not_callable_raises_config_error() -> None:
    with pytest.raises(ConfigError, match=r"`server_model` must be a callable .*; got str"):
        fltrust("trusted.csv")
