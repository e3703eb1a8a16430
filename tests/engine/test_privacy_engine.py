"""The engine under differential privacy: the ledger, ε in the history, the budget enforced, the noise's source."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from fedlearn.core.errors import BudgetExhausted, ConfigError, PrivacyError
from fedlearn.core.messages import DP_CLIP_KEY, DP_NOISE_KEY, SECAGG_MASKED_INPUT, Reply, Task
from fedlearn.core.params import ParamSet
from fedlearn.engine import Engine, EngineConfig, RunState, history_to_csv
from fedlearn.engine.secure_round import minimum_survivors
from fedlearn.privacy.accountant import Accountant, FixedSizeSampling, PoissonSampling
from fedlearn.privacy.differential import AdaptiveClipping, DifferentialPrivacy, distributed_rho
from fedlearn.privacy.ledger import Charge
from fedlearn.privacy.protocol import SecureAggregation
from fedlearn.strategies import fedavg
from tests.engine.conftest import ScriptedFleet, shift_fleet
from tests.engine.secure_helpers import federation

IDS = [f"n{i}" for i in range(10)]


def dp(**options: object) -> DifferentialPrivacy:
    return DifferentialPrivacy(**{"noise_multiplier": 1.0, "epsilon": math.inf, **options})  # type: ignore[arg-type]


def poisson(rate: float = 0.5, **options: object):  # type: ignore[no-untyped-def]
    return fedavg(sampler="poisson", sampling_rate=rate, differential_privacy=dp(**options))


def shifted(node: str, task: Task) -> Reply:
    offset = float(IDS.index(node) + 1) / 10 if node in IDS else 1.0
    return Reply(node_id=node, kind=task.kind, round=task.round, params=task.params.map(lambda a: a + offset),
                 num_examples=5)  # fmt: skip


def run(strategy, *, rounds: int = 3, seed: int = 0, noise: str = "seeded", state: RunState | None = None,
        fleet=None, params: ParamSet, **engine) -> RunState:  # type: ignore[no-untyped-def]  # fmt: skip
    fleet = fleet or ScriptedFleet(IDS, shifted)
    e = Engine(fleet, strategy, EngineConfig(rounds=rounds, seed=seed), dp_noise=noise, **engine)  # type: ignore[arg-type]
    return e.run(state or e.initial_state(params))


def test_a_private_run_charges_each_round_and_records_epsilon(params: ParamSet) -> None:
    final = run(poisson(0.5), params=params)

    epsilons = [r.epsilon for r in final.history]
    expected = Accountant(delta=1e-5).epsilon(noise_multiplier=1.0, sampling=PoissonSampling(rate=0.5), rounds=3)
    assert final.ledger is not None
    assert final.ledger.charges == (Charge(noise_multiplier=1.0, sampling=PoissonSampling(rate=0.5), count=3),)
    assert epsilons[0] < epsilons[1] < epsilons[2]
    assert epsilons[2] == pytest.approx(expected, rel=1e-9)


def test_fixed_size_rounds_are_charged_half_the_multiplier_under_replace_one(params: ParamSet) -> None:
    final = run(fedavg(fraction=0.3, differential_privacy=dp()), rounds=2, params=params)

    assert final.ledger is not None
    sampling = FixedSizeSampling(population=10, sample=3)
    assert final.ledger.charges == (Charge(noise_multiplier=0.5, sampling=sampling, count=2),)


def test_a_run_whose_plan_exceeds_the_budget_is_refused_before_any_round(params: ParamSet) -> None:
    fleet = ScriptedFleet(IDS, shifted)
    saved: list[RunState] = []

    with pytest.raises(PrivacyError, match=r"planned round\(s\) would spend ε = .* over the budget `epsilon` = 0.5"):
        run(poisson(0.5, epsilon=0.5), rounds=20, fleet=fleet, params=params, checkpoint=saved.append)
    assert saved == [] and fleet.outbox == []


def test_a_round_that_would_exceed_the_budget_does_not_run(params: ParamSet) -> None:
    budget = Accountant(delta=1e-5).epsilon(noise_multiplier=1.0, sampling=PoissonSampling(rate=0.5), rounds=3)
    strategy = poisson(0.5, epsilon=budget * (1 + 1e-12))
    engine = Engine(ScriptedFleet(IDS, shifted), strategy, EngineConfig(rounds=3, seed=0), dp_noise="seeded")
    state = engine.run(engine.initial_state(params))

    with pytest.raises(BudgetExhausted, match=r"round 4 would take ε from .* over the budget") as stopped:
        engine.round(state)
    assert stopped.value.state.round == 3
    assert stopped.value.state.ledger == state.ledger
    assert all(r.epsilon is not None and r.epsilon <= strategy.differential_privacy.epsilon for r in state.history)


@pytest.mark.slow  # fixed-size sampling's RDP takes a while to compose
def test_a_run_stops_cleanly_when_fewer_nodes_make_a_round_cost_more_than_planned(params: ParamSet) -> None:
    strategy = fedavg(fraction=0.3, differential_privacy=dp())
    planned = Accountant(delta=1e-5).epsilon(
        noise_multiplier=0.5, sampling=FixedSizeSampling(population=10, sample=3), rounds=3
    )
    strategy = replace(strategy, differential_privacy=dp(epsilon=planned * (1 + 1e-9)))
    fleet = ScriptedFleet(IDS, shifted)
    saved: list[RunState] = []

    def checkpoint(state: RunState) -> None:
        saved.append(state)
        fleet.ids = IDS[:4]  # six nodes leave after round 1: sampling 2 of 4, not 3 of 10, amplifies less

    with pytest.raises(BudgetExhausted) as stopped:
        run(strategy, fleet=fleet, params=params, checkpoint=checkpoint)

    assert [s.round for s in saved] == [1, 2]  # round 3 would have taken ε past the plan
    assert stopped.value.state.round == 2 and stopped.value.state.ledger == saved[-1].ledger
    assert all(r.epsilon is not None and r.epsilon <= planned for r in saved[-1].history)


def test_seeded_noise_is_reproducible_bit_for_bit_and_seeds_differ(params: ParamSet) -> None:
    first = run(poisson(0.5), rounds=2, seed=1, params=params)
    again = run(poisson(0.5), rounds=2, seed=1, params=params)
    other = run(poisson(0.5), rounds=2, seed=2, params=params)

    assert first.params.bitwise_equal(again.params)
    assert not first.params.bitwise_equal(other.params)


def test_system_noise_is_the_default_and_is_not_reproducible(params: ParamSet) -> None:
    def once() -> ParamSet:
        engine = Engine(ScriptedFleet(IDS, shifted), poisson(1.0), EngineConfig(rounds=1, seed=1))
        return engine.run(engine.initial_state(params)).params

    assert not once().bitwise_equal(once())


def test_a_resumed_run_gives_the_same_model_and_epsilon_as_an_uninterrupted_one(params: ParamSet) -> None:
    strategy = poisson(0.5, adaptive=AdaptiveClipping(count_stddev=2.0), noise_multiplier=0.9)
    whole = run(strategy, rounds=4, params=params)
    half = run(strategy, rounds=2, params=params)

    resumed = run(strategy, rounds=4, state=half, params=params)

    assert resumed.params.bitwise_equal(whole.params)
    assert resumed.strategy_state.bitwise_equal(whole.strategy_state)
    assert [r.epsilon for r in resumed.history] == [r.epsilon for r in whole.history]
    assert resumed.ledger == whole.ledger


def test_an_empty_poisson_draw_still_releases_noise_under_central_dp(params: ParamSet) -> None:
    fleet = ScriptedFleet(IDS[:2], shifted)

    final = run(poisson(0.001), rounds=1, fleet=fleet, params=params)

    record = final.history[0]
    assert (record.sampled, record.replies) == (0, 0) and fleet.outbox == []
    assert not final.params.bitwise_equal(params)  # the noise alone
    assert record.epsilon is not None and record.epsilon > 0


def test_an_empty_poisson_draw_leaves_the_model_and_is_not_charged_under_local_dp(params: ParamSet) -> None:
    final = run(poisson(0.001, mechanism="local"), rounds=1, fleet=ScriptedFleet(IDS[:2], shifted), params=params)

    assert final.params.bitwise_equal(params)
    assert final.history[0].epsilon == 0.0


def test_a_huge_update_is_clipped_and_a_nan_one_rejected(params: ParamSet) -> None:
    def answer(node: str, task: Task) -> Reply:
        value = {"huge": 1e30, "nan": math.nan}.get(node, 0.01)
        return Reply(node_id=node, kind=task.kind, round=task.round, params=task.params.map(lambda a: a + value),
                     num_examples=1)  # fmt: skip

    fleet = ScriptedFleet(["a", "b", "huge", "nan"], answer)
    final = run(fedavg(differential_privacy=dp(noise_multiplier=1e-6, clip=1.0)), rounds=1, fleet=fleet, params=params)

    assert "NaN" in final.history[0].failures["nan"]
    assert final.params.is_finite()
    assert final.params.l2_norm() <= (1.0 + 2 * 0.01 * 3) / 4 + 1e-3


def test_history_csv_gets_an_epsilon_column(params: ParamSet) -> None:
    final = run(poisson(0.5), rounds=2, params=params)

    header, first, *_ = history_to_csv(final.history).splitlines()

    assert header.split(",")[7] == "epsilon"
    assert float(first.split(",")[7]) == final.history[0].epsilon
    assert "epsilon" not in history_to_csv(run(fedavg(), rounds=1, params=params).history)


def test_local_nodes_are_told_their_clip_and_noise(params: ParamSet) -> None:
    seen: list[Task] = []

    def answer(node: str, task: Task) -> Reply:
        seen.append(task)
        return shifted(node, task)

    run(poisson(1.0, mechanism="local", clip=0.5, noise_multiplier=2.0), rounds=1, fleet=ScriptedFleet(IDS, answer),
        params=params)  # fmt: skip

    assert {(t.config[DP_CLIP_KEY], t.config[DP_NOISE_KEY]) for t in seen} == {(0.5, 1.0)}


def test_an_engine_whose_run_requires_dp_refuses_a_strategy_without_it(params: ParamSet) -> None:
    with pytest.raises(ConfigError, match="released without noise"):
        Engine(ScriptedFleet(IDS, shifted), fedavg(), EngineConfig(rounds=1, seed=0, require_differential_privacy=True))


SECURE = SecureAggregation(clip=1.0, max_weight=100, bits=64, dropout_fraction=0.3)


def test_central_dp_over_secure_aggregation_sums_unweighted_over_the_fixed_denominator() -> None:
    fed = federation(10, seed=4, drops={SECAGG_MASKED_INPUT: {"n03", "n07"}})
    strategy = replace(fedavg(), secure_aggregation=SECURE, differential_privacy=dp(noise_multiplier=1e-9))
    engine = Engine(fed.fleet, strategy, EngineConfig(rounds=1, seed=0), identity_keys=fed.registry, dp_noise="seeded")

    final = engine.run(engine.initial_state(fed.params))

    survivors = [u for u in fed.ids if u not in ("n03", "n07")]
    for name, value in fed.params.items():
        total = sum(np.clip(fed.updates[fed.ids.index(u)][name], -1, 1) for u in survivors)
        np.testing.assert_allclose(final.params[name], value + total / 10, atol=1e-6)  # every node weighs 1
    assert final.ledger is not None and final.ledger.charges == (Charge(noise_multiplier=1e-9),)
    assert fed.fleet.tasks[("n00", SECAGG_MASKED_INPUT)].config[DP_CLIP_KEY] == 1.0


def test_distributed_dp_sends_each_node_its_noise_share_and_charges_zcdp_for_the_survivors() -> None:
    fed = federation(10, seed=5, drops={SECAGG_MASKED_INPUT: {"n02"}})
    strategy = replace(fedavg(), secure_aggregation=SECURE, differential_privacy=dp(mechanism="distributed", clip=0.5))
    engine = Engine(fed.fleet, strategy, EngineConfig(rounds=1, seed=0), identity_keys=fed.registry, dp_noise="seeded")

    final = engine.run(engine.initial_state(fed.params))

    t = minimum_survivors(SECURE, 10, min_replies=1)
    share = 1.0 * 0.5 / math.sqrt(t)
    assert fed.fleet.tasks[("n00", SECAGG_MASKED_INPUT)].config[DP_NOISE_KEY] == pytest.approx(share)
    rho = distributed_rho(
        clip=0.5, noise_stddev=share, dimension=fed.params.num_values,
        fraction_bits=SECURE.encoding(10).fraction_bits, nodes=9,
    )  # fmt: skip
    assert final.ledger is not None and final.ledger.charges == (Charge(rho=rho),)
    assert final.history[0].epsilon == pytest.approx(final.ledger.epsilon())


def test_shift_fleet_without_dp_keeps_no_ledger(params: ParamSet) -> None:
    final = run(fedavg(), rounds=1, fleet=shift_fleet([1.0], [1]), params=params)

    assert final.ledger is None and final.history[0].epsilon is None


@pytest.mark.parametrize(
    ("settings", "noise", "message"),
    [
        (replace(SECURE, max_weight=1), 1.0, "no room for distributed DP's noise"),
        (SecureAggregation(clip=1.0, max_weight=100, bits=32, fraction_bits=2, dropout_fraction=0.3), 0.4,
         "too coarse for the encoding"),
        (SecureAggregation(clip=1.0, max_weight=100, bits=32, fraction_bits=2, dropout_fraction=0.3), 0.2,
         "σ >= 1/2"),
    ],
)  # fmt: skip
def test_distributed_settings_the_bound_does_not_cover_are_refused_before_any_round(
    settings: SecureAggregation, noise: float, message: str
) -> None:
    fed = federation(10, seed=6)
    strategy = replace(
        fedavg(), secure_aggregation=settings, differential_privacy=dp(mechanism="distributed", noise_multiplier=noise)
    )
    engine = Engine(fed.fleet, strategy, EngineConfig(rounds=1, seed=0), identity_keys=fed.registry)

    with pytest.raises(ConfigError, match=message):
        engine.run(engine.initial_state(fed.params))
    assert fed.fleet.tasks == {}


def test_a_resumed_run_refuses_a_ledger_kept_at_another_delta(params: ParamSet) -> None:
    half = run(poisson(0.5), rounds=1, params=params)

    with pytest.raises(ConfigError, match=r"kept at δ = 1e-05 .* asks δ = 1e-06"):
        run(poisson(0.5, delta=1e-6), rounds=2, state=half, params=params)


def test_budget_exhausted_is_a_privacy_error_for_the_cli() -> None:
    assert issubclass(BudgetExhausted, PrivacyError) and BudgetExhausted("x").exit_code == 3
