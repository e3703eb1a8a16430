"""The private mean: clipping, the noise on the aggregate, the fixed denominator, adaptive clipping, refusals."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import (
    DP_CLIP_KEY,
    DP_DELTA_KEY,
    DP_MECHANISM_KEY,
    DP_NOISE_KEY,
    DP_NOISE_MULTIPLIER_KEY,
    FIT,
    Reply,
)
from fedlearn.core.params import ParamSet
from fedlearn.privacy.differential import AdaptiveClipping, DifferentialPrivacy
from fedlearn.privacy.noise import SeededNoise
from fedlearn.privacy.protocol import SecureAggregation
from fedlearn.strategies import (
    Strategy,
    fedavg,
    fraction_sampler,
    krum,
    poisson_sampler,
    scaffold,
    sgd,
    unweighted_mean,
)
from fedlearn.strategies.accumulators import RunningSum
from fedlearn.strategies.privacy import PrivateRound, add_clipped, private_mean

SECURE = SecureAggregation(clip=1.0, max_weight=100, bits=64)


def dp(**options: object) -> DifferentialPrivacy:
    return DifferentialPrivacy(**{"noise_multiplier": 1.0, "epsilon": 10.0, **options})  # type: ignore[arg-type]


def reply(params: ParamSet, node: str = "n", examples: int = 1) -> Reply:
    return Reply(node_id=node, kind=FIT, round=1, params=params, num_examples=examples)


def private_round(expected: float, seed: int = 0) -> PrivateRound:
    return PrivateRound(expected_nodes=expected, noise=SeededNoise(np.random.default_rng(seed)))


@settings(max_examples=60, deadline=None)
@given(
    update=hnp.arrays(np.float32, st.integers(1, 40), elements=st.floats(-1e6, 1e6, width=32)),
    clip=st.floats(1e-3, 1e3),
)
def test_every_update_is_within_the_clip_bound_after_clipping(update: np.ndarray, clip: float) -> None:
    params = ParamSet({"w": np.zeros_like(update)})
    total = RunningSum(params)

    add_clipped(total, params, [reply(ParamSet({"w": update}))], clip, clip)

    norm = float(np.linalg.norm(total.sums["w"]))
    assert norm <= clip * (1 + 1e-9)
    if np.linalg.norm(update.astype(np.float64)) <= clip:  # an update within the bound passes unchanged
        np.testing.assert_allclose(total.sums["w"], update, rtol=1e-6)


def test_noise_on_the_aggregate_has_standard_deviation_z_times_clip() -> None:
    params = ParamSet({"w": np.zeros(200_000, np.float32), "b": np.zeros(10, np.float32)})
    zero_updates = [reply(params, f"n{i}") for i in range(3)]

    fold = private_mean(
        dp(noise_multiplier=1.3, clip=0.7), params, ParamSet(), zero_updates, private_round(4.0), secure=False
    )

    noise_on_sum = fold.update["w"].astype(np.float64) * 4.0  # the update is the noised sum over the denominator
    assert np.std(noise_on_sum) == pytest.approx(1.3 * 0.7, rel=0.01)
    assert abs(np.mean(noise_on_sum)) < 0.01
    assert fold.count == 3


def test_the_sum_of_clipped_updates_is_divided_by_the_fixed_denominator_not_the_count() -> None:
    params = ParamSet({"w": np.zeros(4, np.float64)})
    updates = [reply(ParamSet({"w": np.ones(4)}), f"n{i}") for i in range(3)]  # norm 2 each, within clip 10

    fold = private_mean(
        dp(noise_multiplier=1e-9, clip=10.0), params, ParamSet(), updates, private_round(5.0), secure=False
    )

    np.testing.assert_allclose(fold.update["w"], 3 / 5, atol=1e-6)


def test_a_huge_update_is_clipped_and_cannot_blow_up_the_model() -> None:
    params = ParamSet({"w": np.zeros(8, np.float32)})
    honest = reply(ParamSet({"w": np.full(8, 0.01, np.float32)}), "honest")
    attacker = reply(ParamSet({"w": np.full(8, 3e37, np.float32)}), "attacker")

    fold = private_mean(
        dp(noise_multiplier=1e-9, clip=1.0), params, ParamSet(), [honest, attacker], private_round(2.0), secure=False
    )

    assert np.isfinite(fold.update["w"]).all()
    assert np.linalg.norm(fold.update["w"]) <= (1.0 + np.linalg.norm(honest.params["w"])) / 2 + 1e-6


def test_local_mode_averages_noised_updates_and_bounds_a_garbage_one() -> None:
    params = ParamSet({"w": np.zeros(100, np.float64)})
    noisy = [reply(ParamSet({"w": np.random.default_rng(i).normal(0, 0.5, 100)}), f"n{i}") for i in range(4)]
    garbage = reply(ParamSet({"w": np.full(100, 1e12)}), "bad")
    local = dp(mechanism="local", noise_multiplier=0.5, clip=1.0)

    honest = private_mean(local, params, ParamSet(), noisy, private_round(9.0), secure=False)
    attacked = private_mean(local, params, ParamSet(), [*noisy, garbage], private_round(9.0), secure=False)

    np.testing.assert_allclose(honest.update["w"], np.mean([r.params["w"] for r in noisy], axis=0))  # not clipped
    bound = 1.0 + 0.5 * (np.sqrt(100) + 10)
    assert np.linalg.norm(attacked.update["w"] * 5 - honest.update["w"] * 4) == pytest.approx(bound)


def test_secure_central_noises_the_recovered_sum_over_the_fixed_denominator() -> None:
    params = ParamSet({"w": np.full(50_000, 2.0)})
    survivors_mean = 0.1
    pseudo = reply(ParamSet({"w": np.full(50_000, 2.0 + survivors_mean)}), "secure-aggregate", examples=8)

    fold = private_mean(
        dp(noise_multiplier=0.5, clip=1.0), params, ParamSet(), [pseudo], private_round(10.0), secure=True
    )

    values = fold.update["w"] * 10.0 - 8 * survivors_mean
    assert np.std(values) == pytest.approx(0.5, rel=0.02)
    assert abs(np.mean(values)) < 0.01
    assert fold.count == 8


def test_distributed_adds_no_noise_at_the_coordinator() -> None:
    params = ParamSet({"w": np.zeros(3)})
    pseudo = reply(ParamSet({"w": np.full(3, 0.25)}), "secure-aggregate", examples=4)

    fold = private_mean(dp(mechanism="distributed"), params, ParamSet(), [pseudo], private_round(5.0), secure=True)

    np.testing.assert_allclose(fold.update["w"], 4 * 0.25 / 5)


@pytest.mark.parametrize(("quantile", "low", "high"), [(0.5, 4.0, 6.0), (0.8, 7.0, 9.0)])
def test_adaptive_clipping_converges_towards_the_target_quantile(quantile: float, low: float, high: float) -> None:
    params = ParamSet({"w": np.zeros(1)})
    private = dp(
        noise_multiplier=1.0,
        clip=0.1,
        adaptive=AdaptiveClipping(target_quantile=quantile, learning_rate=0.2, count_stddev=1.0),
    )
    state = ParamSet({"clip": np.array([0.1])})
    rng = np.random.default_rng(0)
    for number in range(300):
        norms = rng.uniform(0, 10, size=50)  # the quantile q of the norms is 10 q
        updates = [reply(ParamSet({"w": np.array([norm])}), f"n{i}") for i, norm in enumerate(norms)]
        state = private_mean(private, params, state, updates, private_round(50.0, seed=number), secure=False).state

    assert low <= state["clip"][0] <= high


def test_the_clip_norm_lives_in_strategy_state_and_moves_only_under_adaptive_clipping() -> None:
    adaptive = fedavg(differential_privacy=dp(clip=2.0, adaptive=AdaptiveClipping(count_stddev=1.0)))
    params = ParamSet({"w": np.zeros(2)})

    state = adaptive.init_state(params)
    update = adaptive.aggregate(
        params, state, [reply(ParamSet({"w": np.ones(2)}))], num_nodes=1, rng=np.random.default_rng(0),
        private=private_round(1.0),
    )  # fmt: skip

    assert state["dp/clip"][0] == 2.0
    assert update.state["dp/clip"][0] != 2.0


def test_a_private_strategy_weighs_every_node_once() -> None:
    assert fedavg(differential_privacy=dp()).weighted is False
    assert fedavg().weighted is True


@pytest.mark.parametrize(
    ("mechanism", "secure", "expected"),
    [
        ("central", None, {DP_MECHANISM_KEY: "central", DP_NOISE_MULTIPLIER_KEY: 1.0, DP_DELTA_KEY: 1e-5}),
        ("central", SECURE, {DP_CLIP_KEY: 0.5}),
        ("local", None, {DP_CLIP_KEY: 0.5, DP_NOISE_KEY: 0.5}),
        ("distributed", SECURE, {DP_CLIP_KEY: 0.5, DP_NOISE_KEY: 0.5 / 2}),
    ],
)
def test_fit_config_tells_nodes_what_they_clip_and_noise(mechanism: str, secure, expected: dict) -> None:  # type: ignore[no-untyped-def]
    strategy = replace(fedavg(), secure_aggregation=secure, differential_privacy=dp(mechanism=mechanism, clip=0.5))

    config = strategy.private_config(strategy.init_state(ParamSet({"w": np.zeros(1)})), minimum_survivors=4)

    assert expected.items() <= config.items()
    if mechanism == "central" and secure is None:
        assert DP_CLIP_KEY not in config and DP_NOISE_KEY not in config


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: fedavg(reducer=krum(1), differential_privacy=dp()), "cannot be combined with the Krum reducer"),
        (lambda: replace(scaffold(), differential_privacy=dp()), "SCAFFOLD"),
        (lambda: fedavg(differential_privacy=dp(mechanism="distributed")), "'distributed' needs secure aggregation"),
        (
            lambda: replace(fedavg(), secure_aggregation=SECURE, differential_privacy=dp(adaptive=AdaptiveClipping())),
            "adaptive clipping cannot be used with secure aggregation",
        ),
        (lambda: fedavg(fraction=0.5, differential_privacy=dp(accountant="pld")), "PLD accountant cannot"),
        (
            lambda: Strategy(
                name="x", sampler=_Unaccounted(), reducer=unweighted_mean(), transform=sgd(), differential_privacy=dp()
            ),
            "has no `accounting`",
        ),
        (lambda: fedavg(differential_privacy={"epsilon": 1}), "must be a DifferentialPrivacy piece"),  # type: ignore[arg-type]
        (lambda: fedavg(sampler="poisson", fraction=0.5, sampling_rate=0.1), "apply to the fraction sampler"),
        (lambda: fedavg(sampler="poisson"), "needs `sampling_rate`"),
        (lambda: fedavg(sampling_rate=0.1), "is the Poisson sampler's"),
    ],
)
def test_combinations_the_accounting_cannot_cover_are_refused(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        build()


def test_the_builders_accept_the_poisson_sampler_and_dp() -> None:
    strategy = fedavg(sampler="poisson", sampling_rate=0.1, differential_privacy=dp())

    assert strategy.sampler == poisson_sampler(0.1)
    assert fedavg(sampler=fraction_sampler(0.5)).sampler == fraction_sampler(0.5)


class _Unaccounted:
    def sample(self, available, rng):  # type: ignore[no-untyped-def]
        return list(available)


def test_secure_central_noise_also_covers_the_encodings_rounding() -> None:
    params = ParamSet({"w": np.zeros(100_000)})
    pseudo = reply(params, "secure-aggregate", examples=5)
    private = PrivateRound(expected_nodes=1.0, noise=SeededNoise(np.random.default_rng(0)), rounding=0.25)

    fold = private_mean(dp(noise_multiplier=2.0, clip=1.0), params, ParamSet(), [pseudo], private, secure=True)

    assert np.std(fold.update["w"]) == pytest.approx(2.0 * (1.0 + 0.25), rel=0.01)
