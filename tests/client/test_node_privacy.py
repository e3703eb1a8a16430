"""Differential privacy on the node: clipping, local noise, and the node's policy against a coordinator's asks."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fedlearn.client import NodeApp
from fedlearn.client.budget import NodeBudget
from fedlearn.client.node_privacy import NodePrivacy, clip_update, seeded_noise, system_noise, update_norm
from fedlearn.client.trainer import EvalResult, FitResult, NodeState
from fedlearn.core.errors import PrivacyError
from fedlearn.core.messages import (
    DP_CLIP_KEY,
    DP_DELTA_KEY,
    DP_MECHANISM_KEY,
    DP_NOISE_KEY,
    DP_NOISE_MULTIPLIER_KEY,
    FIT,
    SEED_KEY,
    Config,
    Task,
)
from fedlearn.core.params import ParamSet
from fedlearn.privacy.ledger import Charge
from fedlearn.privacy.noise import SeededNoise, SystemNoise

GLOBAL = ParamSet({"w": np.full((300, 100), 0.5), "b": np.zeros(7, dtype=np.float32)})


class ShiftTrainer:
    """'Trains' by adding ``shift`` to every coordinate, so the update is known exactly."""

    def __init__(self, shift: float = 0.0) -> None:
        self.shift = shift
        self.fits = 0

    def fit(self, params: ParamSet, config: Config, state: NodeState) -> FitResult:
        self.fits += 1
        return FitResult(params=params.map(lambda a: (a + self.shift).astype(a.dtype)), num_examples=10)

    def evaluate(self, params: ParamSet, config: Config) -> EvalResult:
        return EvalResult(loss=0.0, num_examples=10)


def dp_config(mechanism: str = "local", *, clip: float = 2.0, z: float = 1.5, delta: float = 1e-5, **extra: object):
    config: dict[str, object] = {
        DP_MECHANISM_KEY: mechanism,
        DP_CLIP_KEY: clip,
        DP_NOISE_MULTIPLIER_KEY: z,
        DP_DELTA_KEY: delta,
        SEED_KEY: 5,
    }
    if mechanism != "central":
        config[DP_NOISE_KEY] = z * clip
    return {**config, **extra}


def fit_task(config: dict[str, object], round: int = 1) -> Task:
    return Task(kind=FIT, round=round, run_id="run-1", params=GLOBAL, config=config)  # type: ignore[arg-type]


# -- clipping ---------------------------------------------------------------------------------

_finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=60, deadline=None)
@given(
    update=arrays(np.float64, st.integers(1, 40), elements=_finite),
    base=arrays(np.float64, 40, elements=st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)),
    clip=st.floats(1e-3, 1e3),
)
def test_clip_update_bounds_the_norm_and_keeps_the_direction(update: np.ndarray, base: np.ndarray, clip: float) -> None:
    base_set = ParamSet({"u": base[: update.size]})
    params = ParamSet({"u": base[: update.size] + update})
    original = update_norm(params, base_set)

    clipped = clip_update(params, base_set, clip)

    clipped_update = clipped["u"] - base_set["u"]
    assert update_norm(clipped, base_set) <= clip * (1 + 1e-12)
    if original > clip and np.linalg.norm(clipped_update) > 0:
        actual = params["u"] - base_set["u"]
        cosine = np.dot(actual, clipped_update) / (np.linalg.norm(actual) * np.linalg.norm(clipped_update))
        assert cosine == pytest.approx(1.0, abs=1e-6)
    if original <= clip:
        assert clipped is params


def test_clip_update_of_float32_parameters_holds_the_bound_after_the_cast() -> None:
    base = ParamSet({"w": np.full(1000, 1000.0, dtype=np.float32)})
    params = ParamSet({"w": np.full(1000, 1003.0, dtype=np.float32)})

    clipped = clip_update(params, base, 0.01)

    assert clipped["w"].dtype == np.float32
    assert update_norm(clipped, base) <= 0.01 * (1 + 1e-12)


def test_fit_with_dp_clip_sends_an_update_within_the_clip() -> None:
    node = NodeApp(node_id="n", trainer=ShiftTrainer(3.0))

    reply = node.handle(fit_task(dp_config("central", clip=2.0)))

    assert reply.ok, reply.error
    assert update_norm(reply.params, GLOBAL) == pytest.approx(2.0, rel=1e-9)


def test_central_dp_fit_without_clip_sends_the_update_unclipped_for_the_coordinator_to_clip() -> None:
    node = NodeApp(node_id="n", trainer=ShiftTrainer(3.0))
    config = {k: v for k, v in dp_config("central", clip=2.0).items() if k != DP_CLIP_KEY}

    reply = node.handle(fit_task(config))

    assert reply.ok, reply.error
    assert update_norm(reply.params, GLOBAL) > 2.0  # adaptive clipping counts the norms the coordinator clips


# -- local noise --------------------------------------------------------------------------------


def test_local_dp_fit_reply_carries_noise_of_std_z_times_clip() -> None:
    node = NodeApp(node_id="n", trainer=ShiftTrainer(0.0))

    reply = node.handle(fit_task(dp_config("local", clip=2.0, z=1.5)))

    noise = np.concatenate([(reply.params[k] - GLOBAL[k]).ravel() for k in GLOBAL])
    assert reply.ok, reply.error
    assert np.std(noise) == pytest.approx(3.0, rel=0.01)
    assert abs(np.mean(noise)) < 0.03
    assert reply.params["b"].dtype == np.float32


def test_local_dp_noise_in_simulation_is_fixed_by_the_task_seed() -> None:
    node = NodeApp(node_id="n", trainer=ShiftTrainer(0.0))

    first, again = (node.handle(fit_task(dp_config("local"))) for _ in range(2))
    other = node.handle(fit_task(dp_config("local", **{SEED_KEY: 6})))

    assert first.params.bitwise_equal(again.params)
    assert not first.params.bitwise_equal(other.params)


def test_local_dp_noise_on_a_deployed_node_differs_every_time() -> None:
    node = NodeApp(node_id="n", trainer=ShiftTrainer(0.0), noise=system_noise)

    first, again = (node.handle(fit_task(dp_config("local"))) for _ in range(2))

    assert not first.params.bitwise_equal(again.params)


def test_noise_factories_give_seeded_noise_in_simulation_and_system_noise_when_deployed() -> None:
    task = fit_task(dp_config())

    assert isinstance(seeded_noise(task), SeededNoise)
    assert isinstance(system_noise(task), SystemNoise)
    assert isinstance(seeded_noise(fit_task({})), SystemNoise)  # no seed: unpredictable noise, never a fixed one


# -- the node's policy, and attacks on it -----------------------------------------------------------


@pytest.fixture
def budget(tmp_path: Path) -> NodeBudget:
    return NodeBudget.open(tmp_path / "ledger.json", epsilon=50.0, delta=1e-5)


def _node(budget: NodeBudget, trainer: ShiftTrainer, **policy: object) -> NodeApp:
    privacy = NodePrivacy(budget=budget, delta=1e-5, **policy)  # type: ignore[arg-type]
    return NodeApp(node_id="n", trainer=trainer, privacy=privacy)


def test_dp_fit_task_charges_the_node_budget_with_its_noise_multiplier(budget: NodeBudget) -> None:
    reply = _node(budget, ShiftTrainer()).handle(fit_task(dp_config("central", z=1.5)))

    assert reply.ok, reply.error
    assert budget.ledger.charges[0].noise_multiplier == 1.5
    assert budget.spent_for("fit task of run 'run-1', round 1") is not None


def test_fit_task_past_the_budget_is_refused_before_training(tmp_path: Path) -> None:
    small = NodeBudget.open(tmp_path / "small.json", epsilon=6.0, delta=1e-5)  # one round costs 4.7
    trainer = ShiftTrainer()
    node = _node(small, trainer)
    replies = [node.handle(fit_task(dp_config("central", z=1.0), round=r)) for r in range(1, 4)]

    assert [r.ok for r in replies] == [True, False, False]
    assert "above its lifetime budget [privacy] epsilon_budget = 6" in (replies[1].error or "")
    assert trainer.fits == 1


def test_require_differential_privacy_refuses_a_fit_task_without_dp(budget: NodeBudget) -> None:
    trainer = ShiftTrainer()

    reply = _node(budget, trainer, require_differential_privacy=True).handle(fit_task({SEED_KEY: 1}))

    assert not reply.ok and "requires differential privacy" in (reply.error or "")
    assert trainer.fits == 0


ATTACKS = {
    "tiny noise multiplier": (dp_config("central", z=0.1), "below this node's [privacy] min_noise_multiplier 0.5"),
    "huge clip, small noise": (
        dp_config("local", clip=1e9, z=1.0, **{DP_NOISE_KEY: 1.0}),
        "is below `dp.noise_multiplier` 1 × `dp.clip` 1e+09",
    ),
    "noise not matching the claim": (dp_config("local", **{DP_NOISE_KEY: 0.01}), "less private than it claims"),
    "negative clip": (dp_config("central", clip=-1.0), "`dp.clip` must be in (0, inf); got -1"),
    "NaN noise multiplier": (dp_config("central", z=math.nan), "`dp.noise_multiplier` must be in (0, inf); got nan"),
    "infinite noise": (dp_config("local", **{DP_NOISE_KEY: math.inf}), "`dp.noise_stddev` must be in (0, inf)"),
    "string clip": (dp_config("central", clip="1"), "`dp.clip` must be a number; got '1'"),
    "delta above the node's": (dp_config("central", delta=1e-3), "above this node's [privacy] delta 1e-05"),
    "delta of one": (dp_config("central", delta=1.0), "`dp.delta` must be in (0, 1)"),
    "unknown mechanism": (dp_config("central", **{DP_MECHANISM_KEY: "none"}), "`dp.mechanism` must be one of"),
    "missing multiplier": (
        {k: v for k, v in dp_config("central").items() if k != DP_NOISE_MULTIPLIER_KEY},
        "lacks `dp.noise_multiplier`",
    ),
    "central with node noise": (dp_config("central", **{DP_NOISE_KEY: 1.0}), "only for them"),
    "distributed in the clear": (dp_config("distributed"), "distributed differential privacy needs secure aggregation"),
    "local without clip": (
        {k: v for k, v in dp_config("local").items() if k != DP_CLIP_KEY},
        "only the coordinator of a run without secure aggregation clips",
    ),
}


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_coordinators_dp_attack_is_refused_and_spends_nothing(budget: NodeBudget, attack: str) -> None:
    config, reason = ATTACKS[attack]
    trainer = ShiftTrainer(1.0)

    reply = _node(budget, trainer, min_noise_multiplier=0.5).handle(fit_task(config))

    assert not reply.ok
    assert reason in (reply.error or ""), reply.error
    assert reply.error is not None and reply.error.startswith("PrivacyError: ")
    assert (budget.epsilon(), budget.ledger.charges, trainer.fits) == (0.0, (), 0)


# -- releases other than training (analytics) -------------------------------------------------------


def test_node_privacy_spend_charges_an_analytics_release_to_the_budget(budget: NodeBudget) -> None:
    privacy = NodePrivacy(budget=budget, delta=1e-5)

    epsilon = privacy.spend(Charge(rho=0.05), delta=1e-6, what="analytics.summarize of job 'j'")

    assert epsilon == budget.epsilon() > 0
    assert budget.ledger.charges == (Charge(rho=0.05),)


@pytest.mark.parametrize(
    ("charge", "delta", "reason"),
    [
        (Charge(rho=2.0), 1e-5, "min_noise_multiplier 1"),  # as private as noise multiplier 0.5
        (Charge(noise_multiplier=0.9), 1e-5, "min_noise_multiplier 1"),
        (Charge(noise_multiplier=3.0), 1e-4, "above this node's [privacy] delta 1e-05"),
    ],
)
def test_node_privacy_spend_refuses_a_release_its_policy_forbids(
    budget: NodeBudget, charge: Charge, delta: float, reason: str
) -> None:
    privacy = NodePrivacy(budget=budget, delta=1e-5, min_noise_multiplier=1.0)

    with pytest.raises(PrivacyError, match=re.escape(reason)):
        privacy.spend(charge, delta=delta, what="analytics")

    assert budget.epsilon() == 0.0


def test_a_node_with_a_budget_refuses_a_fit_task_without_dp(budget: NodeBudget) -> None:
    node = _node(budget, ShiftTrainer())

    reply = node.handle(fit_task({SEED_KEY: 1}))

    assert not reply.ok and "would spend an unbounded ε" in (reply.error or "")
    assert node.privacy.requires_differential_privacy


def test_a_node_without_budget_or_requirement_answers_a_plain_fit_task() -> None:
    node = NodeApp(node_id="n", trainer=ShiftTrainer(1.0))

    reply = node.handle(fit_task({SEED_KEY: 1}))

    assert reply.ok and not node.privacy.requires_differential_privacy
