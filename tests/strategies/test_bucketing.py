"""Bucketing in front of another reducer, beyond the shared conformance suite."""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError, QuorumError
from fedlearn.core.params import ParamSet
from fedlearn.strategies import (
    bucketing,
    bulyan,
    centered_clipping,
    coordinate_median,
    geometric_median,
    krum,
    trimmed_mean,
)

from .helpers import HONEST_MEAN, attacked_updates, random_model, reduce_arrays


def spread(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(4) * (1 + i) for i in range(count)]


@pytest.mark.parametrize(
    "reducer",
    [coordinate_median(), trimmed_mean(0.2), krum(1), bulyan(1), geometric_median()],
    ids=["coordinate_median", "trimmed_mean", "krum", "bulyan", "geometric_median"],
)
def test_bucketing_with_buckets_of_one_is_the_wrapped_reducer(reducer) -> None:
    updates = spread(9)

    bucketed = reduce_arrays(bucketing(reducer, 1), updates)
    plain = reduce_arrays(reducer, updates)

    np.testing.assert_allclose(bucketed, plain, rtol=1e-12, atol=1e-12)


def test_bucketing_with_one_bucket_gives_the_plain_mean_of_every_update() -> None:
    updates = spread(5)

    result = reduce_arrays(bucketing(coordinate_median(), 5), updates, [1.0, 2.0, 3.0, 4.0, 100.0])

    np.testing.assert_allclose(result, np.mean(updates, axis=0), rtol=1e-12)


class Recorder:
    """A reducer that records the (update, weight) pairs it is given and returns zero."""

    streaming = False

    def __init__(self) -> None:
        self.rounds: list[list[tuple[float, float]]] = []

    def init(self, template: ParamSet) -> list[tuple[float, float]]:
        return []

    def add(self, acc: list[tuple[float, float]], model: ParamSet, weight: float) -> list[tuple[float, float]]:
        acc.append((float(model["w"][0]), weight))
        return acc

    def result(self, acc: list[tuple[float, float]]) -> ParamSet:
        self.rounds.append(sorted(acc))
        return ParamSet({"w": np.zeros(1)})


POWERS = [np.array([float(2**i)]) for i in range(7)]
POWER_WEIGHTS = [float(10**i) for i in range(7)]
"""Seven updates whose weights' decimal digits say which of them a bucket holds."""


def members(weight: float) -> list[int]:
    return [i for i, digit in enumerate(reversed(str(int(weight)))) if digit == "1"]


def test_bucketing_hands_its_reducer_the_plain_mean_and_summed_weight_of_each_bucket() -> None:
    recorder = Recorder()

    reduce_arrays(bucketing(recorder, 3), POWERS, POWER_WEIGHTS)

    [seen] = recorder.rounds
    assert sorted(len(members(weight)) for _, weight in seen) == [1, 3, 3]
    assert sorted(i for _, weight in seen for i in members(weight)) == list(range(7))
    for mean, weight in seen:
        assert mean == sum(2**i for i in members(weight)) / len(members(weight))


def test_bucketing_draws_the_same_buckets_for_the_same_seed_and_others_for_others() -> None:
    recorder = Recorder()

    for seed in (1, 1, 2, 3, 4):
        reduce_arrays(bucketing(recorder, 2), POWERS, POWER_WEIGHTS, seed=seed)

    assert recorder.rounds[0] == recorder.rounds[1]
    assert any(other != recorder.rounds[0] for other in recorder.rounds[2:])


def test_bucketing_buckets_do_not_depend_on_reply_order() -> None:
    recorder = Recorder()
    order = np.random.default_rng(0).permutation(len(POWERS))

    reduce_arrays(bucketing(recorder, 2), POWERS, POWER_WEIGHTS, seed=3)
    reduce_arrays(bucketing(recorder, 2), [POWERS[i] for i in order], [POWER_WEIGHTS[i] for i in order], seed=3)

    assert recorder.rounds[0] == recorder.rounds[1]


@pytest.mark.parametrize("attack", ["huge", "sign_flip"])
def test_bucketing_in_front_of_bulyan_stays_near_the_honest_mean(attack: str) -> None:
    updates = attacked_updates(attack, honest=20, byzantine=2)  # 11 buckets of 2: at most 2 spoiled

    robust = reduce_arrays(bucketing(bulyan(2), 2), updates)

    assert np.linalg.norm(robust - HONEST_MEAN) < 0.5


def test_bucketing_with_too_few_buckets_names_the_buckets_and_the_reducers_need() -> None:
    with pytest.raises(
        QuorumError, match=r"made 4 bucket\(s\) of 8 update\(s\).*bulyan with num_byzantine=1 needs at least 7"
    ):
        reduce_arrays(bucketing(bulyan(1), 2), spread(8))


def test_bucketing_declares_enough_replies_for_its_reducers_buckets() -> None:
    assert bucketing(bulyan(1), 2).min_replies == 13  # 7 buckets: 6 of two and one of one


def test_bucketing_passes_its_reducers_state_through() -> None:
    params = random_model(0)
    inner = centered_clipping(1.0)

    assert bucketing(inner, 2).init_state(params).bitwise_equal(inner.init_state(params))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: bucketing(krum(1), 0), "`bucket_size` must be an integer >= 1; got 0"),
        (lambda: bucketing(krum(1), 2.5), r"`bucket_size` must be an integer >= 1; got 2.5 \(float\)"),
        (lambda: bucketing("krum", 2), "`reducer` must implement the Reducer or RoundReducer protocol; got str"),
    ],
    ids=["zero", "float", "not_a_reducer"],
)
def test_bucketing_bad_hyper_parameter_raises_config_error_naming_it(build, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()
