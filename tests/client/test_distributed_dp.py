"""Distributed DP through a real in-process SecAgg+ round: nodes clip, add noise shares, and the masks still cancel."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from fedlearn.client.budget import NodeBudget
from fedlearn.client.node_app import NodeApp
from fedlearn.client.node_privacy import NodePrivacy, update_norm
from fedlearn.client.secure_aggregation import SecureAggregationNode
from fedlearn.core.errors import QuorumError, SecureAggregationError
from fedlearn.core.messages import (
    DP_CLIP_KEY,
    DP_DELTA_KEY,
    DP_MECHANISM_KEY,
    DP_NOISE_KEY,
    DP_NOISE_MULTIPLIER_KEY,
    SEED_KEY,
)
from fedlearn.core.params import ParamSet
from fedlearn.engine.secure_round import SecureOutcome, SecureRound
from fedlearn.privacy.keys import generate_identity, identity_key
from fedlearn.privacy.protocol import SecureAggregation
from fedlearn.simulation.inprocess import InProcessFleet
from tests.engine.secure_helpers import FixedTrainer

N, D, CLIP, Z = 4, 20_000, 1.0, 1.0
SHARE = Z * CLIP / np.sqrt(N)  # each node's noise: the N shares add up to Z * CLIP
SETTINGS = SecureAggregation(clip=1.0, max_weight=1, fraction_bits=20, dropout_fraction=0.3)


class Federation:
    def __init__(self, tmp_path: Path, *, budget: float = 100.0) -> None:
        rng = np.random.default_rng(3)
        self.ids = [f"n{i}" for i in range(N)]
        self.params = ParamSet({"w": rng.normal(size=D)})
        self.updates = [{"w": rng.normal(scale=0.05, size=D)} for _ in self.ids]  # norm ~7, clipped to 1
        identities = {node: generate_identity() for node in self.ids}
        registry = {node: identity_key(key) for node, key in identities.items()}
        self.budgets = {u: NodeBudget.open(tmp_path / f"{u}.json", epsilon=budget) for u in self.ids}

        def build(node_id: str) -> NodeApp:
            i = self.ids.index(node_id)
            handlers = SecureAggregationNode(identities[node_id], registry).handlers()
            privacy = NodePrivacy(budget=self.budgets[node_id])
            trainer = FixedTrainer(self.updates[i], 10)
            return NodeApp(node_id=node_id, trainer=trainer, handlers=handlers, require_secure_aggregation=True,
                           privacy=privacy)  # fmt: skip

        self.fleet = InProcessFleet(self.ids, build)
        self.round = SecureRound(self.fleet, SETTINGS, identity_keys=registry, graph_seed=7, run_id="run", timeout=5.0,
                                 min_replies=1, clock=time.monotonic, buffer_bytes=1 << 22)  # fmt: skip

    def run(self, *, share: float = SHARE, weighted: bool = False, mechanism: str = "distributed") -> SecureOutcome:
        config = {DP_MECHANISM_KEY: mechanism, DP_CLIP_KEY: CLIP, DP_NOISE_MULTIPLIER_KEY: Z, DP_DELTA_KEY: 1e-5}
        if mechanism != "central":
            config[DP_NOISE_KEY] = share
        return self.round.run(1, self.params, self.ids, fit_config=lambda u: {SEED_KEY: self.ids.index(u), **config},
                              fit_extras=ParamSet(), control_variates=False, weighted=weighted)  # fmt: skip

    def clipped_mean(self) -> np.ndarray:
        clipped = []
        for update in self.updates:
            norm = float(np.linalg.norm(update["w"]))
            clipped.append(update["w"] * min(1.0, CLIP / norm))
        return sum(clipped) / N


def test_distributed_dp_sum_is_the_clipped_mean_plus_noise_of_std_z_clip(tmp_path: Path) -> None:
    fed = Federation(tmp_path)

    outcome = fed.run()

    residual = outcome.reply.params["w"] - fed.params["w"] - fed.clipped_mean()
    assert outcome.survived == N
    assert np.std(residual) == pytest.approx(Z * CLIP / N, rel=0.03)  # the noise of the sum, over N
    assert abs(np.mean(residual)) < 4 * Z * CLIP / N / np.sqrt(D)
    assert all(b.ledger.charges[0].noise_multiplier == Z for b in fed.budgets.values())


def test_central_dp_under_secure_aggregation_sums_clipped_updates_without_node_noise(tmp_path: Path) -> None:
    fed = Federation(tmp_path)

    outcome = fed.run(mechanism="central")

    mean = outcome.reply.params["w"] - fed.params["w"]
    assert update_norm(ParamSet({"w": mean}), ParamSet({"w": np.zeros(D)})) <= CLIP * (1 + 1e-4)
    assert np.abs(mean - fed.clipped_mean()).max() < 1e-5  # fixed-point rounding only


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"share": SHARE / 10}, "less private than it claims"),
        ({"weighted": True}, "the run must send `secagg.weighted` = false"),
        ({"share": 60.0}, "could overflow 32 bits with distributed-DP noise"),
    ],
)
def test_a_node_refuses_distributed_noise_it_cannot_vouch_for_and_spends_nothing(
    tmp_path: Path, change: dict[str, object], reason: str
) -> None:
    fed = Federation(tmp_path)

    with pytest.raises((QuorumError, SecureAggregationError)) as error:
        fed.run(**change)  # type: ignore[arg-type]

    assert reason in str(error.value)
    assert all(b.epsilon() == 0.0 for b in fed.budgets.values())
