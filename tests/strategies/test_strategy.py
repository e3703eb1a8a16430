"""``Strategy``: composing the pieces into a round, including SCAFFOLD's control variates."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError, QuorumError, ValidationError
from fedlearn.core.messages import CONTROL_DELTA_PREFIX, CONTROL_PREFIX, FIT, Reply
from fedlearn.core.params import ParamSet
from fedlearn.privacy.protocol import SecureAggregation
from fedlearn.strategies import (
    Strategy,
    bucketing,
    bulyan,
    centered_clipping,
    fedavg,
    fltrust,
    fraction_sampler,
    geometric_median,
    krum,
    norm_bound,
    scaffold,
    sgd,
    weighted_mean,
)

from .helpers import make_replies, random_model

RNG = np.random.default_rng(0)


def reply(
    node: str, params: np.ndarray, examples: int, *, delta_c: np.ndarray | None = None, loss: float = 0.0
) -> Reply:
    extras = ParamSet() if delta_c is None else ParamSet({"w": delta_c}).with_prefix(CONTROL_DELTA_PREFIX)
    return Reply(
        node_id=node,
        kind=FIT,
        round=1,
        params=ParamSet({"w": params}),
        num_examples=examples,
        metrics={"loss": loss},
        extras=extras,
    )


def test_fedavg_round_gives_the_example_weighted_mean_of_client_models() -> None:
    params = ParamSet({"w": np.array([0.0, 0.0])})
    replies = [reply("a", np.array([1.0, 2.0]), 1), reply("b", np.array([4.0, 8.0]), 2)]

    update = fedavg().aggregate(params, ParamSet(), replies, num_nodes=2, rng=RNG)

    np.testing.assert_allclose(update.params["w"], [3.0, 6.0])


def test_aggregate_reports_replies_examples_and_example_weighted_metrics() -> None:
    params = ParamSet({"w": np.array([0.0])})
    replies = [reply("a", np.array([1.0]), 10, loss=1.0), reply("b", np.array([1.0]), 30, loss=3.0)]

    update = fedavg().aggregate(params, ParamSet(), replies, num_nodes=2, rng=RNG)

    assert (update.num_replies, update.num_examples, dict(update.metrics)) == (2, 40, {"loss": 2.5})


def test_aggregate_without_replies_raises_quorum_error() -> None:
    with pytest.raises(QuorumError, match="no valid fit replies"):
        fedavg().aggregate(ParamSet({"w": np.zeros(1)}), ParamSet(), [], num_nodes=2, rng=RNG)


def test_aggregate_consumes_a_generator_of_replies_once() -> None:
    params = random_model(0)
    replies = make_replies(params, count=5, seed=1)

    from_list = fedavg().aggregate(params, ParamSet(), replies, num_nodes=5, rng=RNG)
    from_generator = fedavg().aggregate(params, ParamSet(), (r for r in replies), num_nodes=5, rng=RNG)

    assert from_generator.params.bitwise_equal(from_list.params)


def test_strategy_with_a_piece_of_the_wrong_kind_raises_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="`reducer` must implement the Reducer or RoundReducer protocol; got SGD"):
        Strategy(name="broken", sampler=fraction_sampler(), reducer=sgd(), transform=sgd())


def test_strategy_without_a_name_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="name must be non-empty"):
        Strategy(name="", sampler=fraction_sampler(), reducer=weighted_mean(), transform=sgd())


def test_scaffold_initial_state_holds_a_zero_control_variate_per_parameter() -> None:
    params = ParamSet({"w": np.array([1.0, 2.0], dtype=np.float32)})

    state = scaffold().init_state(params)

    assert state.select(CONTROL_PREFIX).bitwise_equal(params.zeros_like())


def test_scaffold_fit_payload_sends_the_control_variate_and_flag() -> None:
    strategy = scaffold()
    params = ParamSet({"w": np.array([1.0, 2.0])})

    config, extras = strategy.fit_payload(strategy.init_state(params))

    assert config["scaffold"] is True
    assert sorted(extras) == [f"{CONTROL_PREFIX}w"]


def test_scaffold_round_moves_the_model_by_lr_times_the_plain_mean_delta() -> None:
    strategy = scaffold(server_learning_rate=0.5)
    params = ParamSet({"w": np.array([0.0, 0.0])})
    replies = [
        reply("a", np.array([1.0, 2.0]), 10, delta_c=np.array([0.3, 0.6])),
        reply("b", np.array([3.0, 0.0]), 30, delta_c=np.array([0.1, -0.2])),
    ]

    update = strategy.aggregate(params, strategy.init_state(params), replies, num_nodes=4, rng=RNG)

    np.testing.assert_allclose(update.params["w"], [1.0, 0.5])  # 0.5 * mean([1, 2], [3, 0]), weights ignored


def test_scaffold_round_moves_the_control_variate_by_the_delta_sum_over_all_nodes() -> None:
    strategy = scaffold()
    params = ParamSet({"w": np.array([0.0, 0.0])})
    state = strategy.init_state(params)
    first = [reply("a", np.array([1.0, 1.0]), 1, delta_c=np.array([0.3, 0.6]))]
    second = [
        reply("a", np.array([1.0, 1.0]), 1, delta_c=np.array([0.1, -0.2])),
        reply("b", np.array([1.0, 1.0]), 1, delta_c=np.array([0.3, 0.2])),
    ]

    state = strategy.aggregate(params, state, first, num_nodes=4, rng=RNG).state
    state = strategy.aggregate(params, state, second, num_nodes=4, rng=RNG).state

    # c = (0.3 + 0.1 + 0.3) / 4 and (0.6 - 0.2 + 0.2) / 4: every round divides by all 4 nodes
    np.testing.assert_allclose(state[f"{CONTROL_PREFIX}w"], [0.175, 0.15])


def test_scaffold_reply_without_control_delta_raises_validation_error_naming_the_node() -> None:
    strategy = scaffold()
    params = ParamSet({"w": np.array([0.0])})

    with pytest.raises(ValidationError, match=r"node 'b' must carry one 'scaffold/delta_c/' array per parameter"):
        strategy.aggregate(
            params,
            strategy.init_state(params),
            [reply("a", np.array([1.0]), 1, delta_c=np.array([0.1])), reply("b", np.array([1.0]), 1)],
            num_nodes=2,
            rng=RNG,
        )


def test_scaffold_control_delta_with_wrong_shape_raises_validation_error() -> None:
    strategy = scaffold()
    params = ParamSet({"w": np.array([0.0])})

    with pytest.raises(ValidationError, match=r"control delta 'w' has shape \(2,\); expected \(1,\)"):
        strategy.aggregate(
            params,
            strategy.init_state(params),
            [reply("a", np.array([1.0]), 1, delta_c=np.array([0.1, 0.2]))],
            num_nodes=2,
            rng=RNG,
        )


def test_scaffold_with_fewer_known_nodes_than_replies_raises_config_error() -> None:
    strategy = scaffold()
    params = ParamSet({"w": np.array([0.0])})
    replies = [reply(n, np.array([1.0]), 1, delta_c=np.array([0.1])) for n in "abc"]

    with pytest.raises(ConfigError, match=r"`num_nodes` must be at least the number of replies \(3\); got 2"):
        strategy.aggregate(params, strategy.init_state(params), replies, num_nodes=2, rng=RNG)


# Round reducers and robust defences -------------------------------------------------------------


def test_round_reducer_state_lives_under_reducer_in_the_strategy_state() -> None:
    params = random_model(0)

    state = fedavg(reducer=centered_clipping(1.0)).init_state(params)

    assert state.bitwise_equal(params.zeros_like().with_prefix("reducer/center/"))


@dataclass(frozen=True)
class NoisyStep:
    """A transform that draws from the round's generator, as DP noise would."""

    def init(self, params: ParamSet) -> ParamSet:
        return ParamSet()

    def update(self, update, state, params, rng):
        return update.map(lambda u: u + rng.standard_normal(u.shape).astype(u.dtype)), state


def one_step(params: ParamSet, rng: np.random.Generator) -> ParamSet:
    return params.map(lambda a: a + 1)


def one_step_after_a_draw(params: ParamSet, rng: np.random.Generator) -> ParamSet:
    rng.standard_normal(100)  # as a trusted-data learner's shuffle would
    return one_step(params, rng)


def test_round_reducer_draws_leave_the_transforms_draws_unchanged() -> None:
    params = random_model(0)
    replies = make_replies(params, count=5, seed=1)
    quiet = Strategy(name="a", sampler=fraction_sampler(), reducer=fltrust(one_step), transform=NoisyStep())
    drawing = replace(quiet, reducer=fltrust(one_step_after_a_draw))

    first = quiet.aggregate(params, ParamSet(), replies, num_nodes=5, rng=np.random.default_rng(3))
    second = drawing.aggregate(params, ParamSet(), replies, num_nodes=5, rng=np.random.default_rng(3))

    assert second.params.bitwise_equal(first.params)


def test_round_reducer_draws_from_the_rounds_generator() -> None:
    strategy = fedavg(reducer=bucketing(krum(1), 2))
    params = random_model(0)
    replies = make_replies(params, count=12, seed=1)

    results = [
        strategy.aggregate(params, ParamSet(), replies, num_nodes=12, rng=np.random.default_rng(seed)).params
        for seed in (1, 1, 2, 3, 4)
    ]

    assert results[0].bitwise_equal(results[1])
    assert any(not r.bitwise_equal(results[0]) for r in results[2:])


SECURE = SecureAggregation(clip=10.0, max_weight=1000)


@pytest.mark.parametrize(
    ("reducer", "reason"),
    [
        (bulyan(1), "it selects updates by their distances to one another"),
        (geometric_median(), "it weighs each update by its distance to the current estimate"),
        (centered_clipping(1.0), "it clips each update's distance to the centre"),
        (norm_bound(weighted_mean(), 1.0), "it bounds each update's L2 norm"),
        (bucketing(weighted_mean(), 2), "it averages random buckets of individual updates"),
        (fltrust(lambda params, rng: params), "it scores each update by its direction against the server's own"),
    ],
    ids=["bulyan", "geometric_median", "centered_clipping", "norm_bound", "bucketing", "fltrust"],
)
def test_robust_defence_under_secure_aggregation_is_refused_saying_why(reducer, reason: str) -> None:
    with pytest.raises(ConfigError, match=rf"needs each node's individual update \({reason}\), and under secure"):
        Strategy(name="x", sampler=fraction_sampler(), reducer=reducer, transform=sgd(), secure_aggregation=SECURE)
