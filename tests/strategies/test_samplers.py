"""The fraction and Poisson samplers: how many nodes, which ones, their accounting, and when they refuse."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError, QuorumError
from fedlearn.privacy.accountant import FixedSizeSampling, PoissonSampling
from fedlearn.strategies import fraction_sampler, poisson_sampler

NODES = [f"node-{i:02d}" for i in range(30)]


def test_fraction_sampler_same_seed_gives_same_nodes() -> None:
    sampler = fraction_sampler(0.3)

    first = sampler.sample(NODES, np.random.default_rng(42))
    second = sampler.sample(NODES, np.random.default_rng(42))

    assert first == second


def test_fraction_sampler_different_seeds_give_different_nodes() -> None:
    sampler = fraction_sampler(0.3)

    draws = {tuple(sampler.sample(NODES, np.random.default_rng(seed))) for seed in range(5)}

    assert len(draws) > 1


def test_fraction_sampler_returns_nodes_in_the_order_they_are_available() -> None:
    available = list(reversed(NODES))

    chosen = fraction_sampler(0.5).sample(available, np.random.default_rng(0))

    assert chosen == [node for node in available if node in chosen]
    assert len(set(chosen)) == len(chosen)


def test_fraction_sampler_takes_the_ceiling_of_fraction_times_available() -> None:
    chosen = fraction_sampler(0.25).sample(NODES, np.random.default_rng(0))

    assert len(chosen) == 8  # ceil(0.25 * 30) = ceil(7.5)


def test_fraction_sampler_is_not_fooled_by_binary_rounding() -> None:
    chosen = fraction_sampler(0.1).sample(NODES, np.random.default_rng(0))

    assert len(chosen) == 3  # 0.1 * 30 is 3.0000000000000004 in binary floating point


def test_fraction_sampler_with_fraction_one_takes_every_node_in_order() -> None:
    chosen = fraction_sampler().sample(NODES, np.random.default_rng(0))

    assert chosen == NODES


def test_fraction_sampler_raises_small_samples_to_min_nodes() -> None:
    chosen = fraction_sampler(0.01, min_nodes=5).sample(NODES, np.random.default_rng(0))

    assert len(chosen) == 5


def test_fraction_sampler_caps_samples_at_max_nodes() -> None:
    chosen = fraction_sampler(0.9, max_nodes=4).sample(NODES, np.random.default_rng(0))

    assert len(chosen) == 4


def test_fraction_sampler_never_asks_for_more_nodes_than_are_available() -> None:
    chosen = fraction_sampler(1.0, min_nodes=2, max_nodes=100).sample(NODES[:3], np.random.default_rng(0))

    assert chosen == NODES[:3]


def test_fraction_sampler_with_fewer_nodes_than_min_nodes_raises_quorum_error() -> None:
    sampler = fraction_sampler(0.5, min_nodes=4)

    with pytest.raises(QuorumError, match=r"at least 4 node\(s\) \(`min_nodes`\) but only 3 are available"):
        sampler.sample(NODES[:3], np.random.default_rng(0))


def test_fraction_sampler_draws_only_from_the_generator_it_is_given() -> None:
    np.random.seed(1)
    random.seed(1)
    numpy_state, python_state = np.random.get_state()[1].copy(), random.getstate()

    fraction_sampler(0.5).sample(NODES, np.random.default_rng(0))

    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)
    assert random.getstate() == python_state


def test_fraction_sampler_picks_every_node_about_equally_often() -> None:
    sampler = fraction_sampler(0.2)
    rng = np.random.default_rng(0)

    counts = Counter(node for _ in range(3000) for node in sampler.sample(NODES, rng))

    expected = 3000 * 6 / 30
    assert set(counts) == set(NODES)
    assert all(abs(count - expected) < 0.15 * expected for count in counts.values())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fraction": 0.0}, r"`fraction` must be in \(0, 1\]; got 0.0"),
        ({"fraction": 1.5}, r"`fraction` must be in \(0, 1\]; got 1.5"),
        ({"fraction": float("nan")}, r"`fraction` must be in \(0, 1\]; got nan"),
        ({"fraction": "0.5"}, r"`fraction` must be a number in \(0, 1\]; got '0.5' \(str\)"),
        ({"min_nodes": 0}, "`min_nodes` must be an integer >= 1; got 0"),
        ({"min_nodes": True}, r"`min_nodes` must be an integer >= 1; got True \(bool\)"),
        ({"min_nodes": 2.0}, r"`min_nodes` must be an integer >= 1; got 2.0 \(float\)"),
        ({"min_nodes": 5, "max_nodes": 4}, "`max_nodes` must be an integer >= 5; got 4"),
    ],
    ids=["fraction_zero", "fraction_big", "fraction_nan", "fraction_str", "min_zero", "min_bool", "min_float", "max"],
)
def test_fraction_sampler_bad_value_raises_config_error_naming_it(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        fraction_sampler(**options)


def test_poisson_sampler_includes_each_node_with_probability_rate() -> None:
    sampler = poisson_sampler(0.2)
    rng = np.random.default_rng(7)
    draws = 4000

    counts = Counter(node for _ in range(draws) for node in sampler.sample(NODES, rng))

    frequencies = np.array([counts[node] / draws for node in NODES])
    assert np.all(np.abs(frequencies - 0.2) < 5 * np.sqrt(0.2 * 0.8 / draws))


def test_poisson_sampler_keeps_the_available_order_and_the_same_seed_gives_the_same_nodes() -> None:
    sampler = poisson_sampler(0.5)

    first = sampler.sample(NODES, np.random.default_rng(3))

    assert first == sampler.sample(NODES, np.random.default_rng(3))
    assert first == [node for node in NODES if node in set(first)]


def test_poisson_sampler_may_draw_no_node() -> None:
    draws = [poisson_sampler(0.01).sample(NODES[:3], np.random.default_rng(seed)) for seed in range(20)]

    assert [] in draws


def test_samplers_describe_their_accounting() -> None:
    assert poisson_sampler(0.1).accounting(50) == PoissonSampling(rate=0.1)
    assert poisson_sampler(0.1).expected_nodes(50) == pytest.approx(5.0)
    assert fraction_sampler(0.2).accounting(30) == FixedSizeSampling(population=30, sample=6)
    assert fraction_sampler(0.2).expected_nodes(30) == 6.0
    assert fraction_sampler(1.0).accounting(30) == PoissonSampling(rate=1.0)  # everyone: no sampling at all


def test_poisson_sampler_refuses_a_rate_outside_zero_one() -> None:
    with pytest.raises(ConfigError, match=r"`rate` must be in \(0, 1\]; got 1.5"):
        poisson_sampler(1.5)
