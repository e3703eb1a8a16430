"""A Byzantine node's trainer, and what it knows of benign updates: its own shards, its colluders', everyone's."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from fedlearn.client import NodeApp, softmax_regression
from fedlearn.client.attacks import build_attack, flat_update
from fedlearn.client.byzantine import ByzantineTrainer, Collusion, OwnShards, byzantine_trainer
from fedlearn.client.trainer import FitResult, NodeState, Trainer
from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import FIT, ROUND_KEY, SEED_KEY, Config, Task
from fedlearn.core.params import ParamSet
from fedlearn.engine.seeding import node_seed
from tests.client.conftest import tiny_classification

LEARNER = softmax_regression(5, 3)
PARAMS = LEARNER.init_params(0)
CONFIG: Config = {"local_epochs": 1, "batch_size": 8, "learning_rate": 0.1, SEED_KEY: 11, ROUND_KEY: 3}
RUN_SEED = 9


def parts(count: int = 3) -> list:
    return [tiny_classification(rows=30, seed=i) for i in range(count)]


@dataclass
class Counting:
    """A trainer that counts its fits."""

    trainer: Trainer
    fits: list[Config] = field(default_factory=list)

    def fit(self, params: ParamSet, config: Config, state: NodeState, extras: ParamSet | None = None) -> FitResult:
        self.fits.append(config)
        return self.trainer.fit(params, config, state)

    def evaluate(self, params, config):
        return self.trainer.evaluate(params, config)


def honest_update(data, config: Config = CONFIG) -> np.ndarray:
    return flat_update(LEARNER.trainer(data).fit(PARAMS, config, {}).params, PARAMS)


def test_a_sign_flipping_node_sends_its_honest_update_reversed_and_scaled() -> None:
    data = parts(1)[0]
    trainer = byzantine_trainer("node-0", LEARNER, data, build_attack("sign_flip", scale=3.0), seed=0)

    sent = flat_update(trainer.fit(PARAMS, CONFIG, {}).params, PARAMS)

    np.testing.assert_allclose(sent, -3.0 * honest_update(data), rtol=1e-5, atol=1e-6)


def test_a_poisoning_node_trains_on_more_rows_but_claims_its_own_count() -> None:
    data = parts(1)[0]
    trainer = byzantine_trainer("node-0", LEARNER, data, build_attack("backdoor", boost=1.0), seed=0)

    assert trainer.fit(PARAMS, CONFIG, {}).num_examples == len(data)


def test_a_label_flipping_node_sends_the_update_of_flipped_labels_unchanged() -> None:
    data = parts(1)[0]
    trainer = byzantine_trainer("node-0", LEARNER, data, build_attack("label_flip"), seed=0)
    assert data.y is not None

    sent = flat_update(trainer.fit(PARAMS, CONFIG, {}).params, PARAMS)

    flipped = tiny_classification(rows=30, seed=0)
    expected = honest_update(type(flipped)(x=flipped.x, y=2 - data.y, n_classes=3, name=flipped.name))
    np.testing.assert_allclose(sent, expected, rtol=1e-6)


def test_an_attack_that_estimates_needs_a_source_of_benign_updates() -> None:
    with pytest.raises(ConfigError, match="attack 'ipm' estimates benign updates"):
        ByzantineTrainer(node_id="n", trainer=LEARNER.trainer(parts(1)[0]), attack=build_attack("ipm"))


def test_own_shards_train_one_honest_update_per_part_of_the_nodes_rows_reproducibly() -> None:
    data = tiny_classification(rows=40)
    shards = OwnShards.split(LEARNER, data, shards=4, seed=0)

    first = shards.benign_updates("n", PARAMS, CONFIG, None, np.zeros(18))
    again = OwnShards.split(LEARNER, data, shards=4, seed=0).benign_updates("n", PARAMS, CONFIG, None, np.zeros(18))

    assert first.shape == (4, 18)
    np.testing.assert_array_equal(first, again)
    assert len({row.tobytes() for row in first}) == 4


def test_own_shards_need_at_least_two_parts_and_a_row_for_each() -> None:
    with pytest.raises(ConfigError, match="`shards` must be an integer >= 2"):
        OwnShards.split(LEARNER, tiny_classification(rows=40), shards=1, seed=0)
    with pytest.raises(ConfigError, match="at most the node's 3 rows"):
        OwnShards.split(LEARNER, tiny_classification(rows=3), shards=4, seed=0)


def test_collusion_gives_each_members_update_as_the_member_trains_it_with_its_engine_seed() -> None:
    data = parts()
    members = {f"node-{i}": LEARNER.trainer(d) for i, d in enumerate(data)}

    shared = Collusion(members, run_seed=RUN_SEED).benign_updates("node-9", PARAMS, CONFIG, None, np.zeros(18))

    for i, d in enumerate(data):
        own_seed = {**CONFIG, SEED_KEY: node_seed(RUN_SEED, 3, f"node-{i}")}
        np.testing.assert_array_equal(shared[i], honest_update(d, own_seed))


def test_collusion_is_the_same_whichever_member_asks_first() -> None:
    data = parts()

    def asked_by(member: str) -> np.ndarray:
        collusion = Collusion({f"node-{i}": LEARNER.trainer(d) for i, d in enumerate(data)}, run_seed=RUN_SEED)
        i = int(member[-1])
        own = honest_update(data[i], {**CONFIG, SEED_KEY: node_seed(RUN_SEED, 3, member)})
        return collusion.benign_updates(member, PARAMS, CONFIG, None, own)

    np.testing.assert_array_equal(asked_by("node-0"), asked_by("node-2"))


def test_collusion_trains_each_member_once_per_round_and_uses_what_a_member_shares() -> None:
    counting = {f"node-{i}": Counting(LEARNER.trainer(d)) for i, d in enumerate(parts())}
    collusion = Collusion(counting, run_seed=RUN_SEED)

    collusion.benign_updates("node-0", PARAMS, CONFIG, None, np.zeros(18))
    collusion.benign_updates("node-1", PARAMS, CONFIG, None, np.zeros(18))
    collusion.benign_updates("node-0", PARAMS, {**CONFIG, ROUND_KEY: 4}, None, np.zeros(18))

    assert [len(c.fits) for c in counting.values()] == [0, 2, 2]  # node-0 shared its own update both rounds


def test_an_ipm_node_of_a_collusion_sends_minus_epsilon_times_the_colluders_mean() -> None:
    data = parts()
    collusion = Collusion({f"node-{i}": LEARNER.trainer(d) for i, d in enumerate(data)}, run_seed=RUN_SEED)
    attack = build_attack("ipm", epsilon=0.5)
    node = byzantine_trainer("node-1", LEARNER, data[1], attack, seed=0, benign=collusion)
    config = {**CONFIG, SEED_KEY: node_seed(RUN_SEED, 3, "node-1")}

    sent = flat_update(node.fit(PARAMS, config, {}).params, PARAMS)

    honest = [honest_update(d, {**CONFIG, SEED_KEY: node_seed(RUN_SEED, 3, f"node-{i}")}) for i, d in enumerate(data)]
    np.testing.assert_allclose(sent, -0.5 * np.mean(honest, axis=0), rtol=1e-5, atol=1e-7)


def test_a_byzantine_node_answers_fit_tasks_through_the_node_app() -> None:
    data = parts(1)[0]
    app = NodeApp(node_id="n", trainer=byzantine_trainer("n", LEARNER, data, build_attack("gaussian"), seed=0))

    reply = app.handle(Task(kind=FIT, round=1, params=PARAMS, config=CONFIG))

    assert reply.error is None and reply.params is not None
    assert 1.0 < np.std(flat_update(reply.params, PARAMS)) < 1.5  # noise of std 1, not a small honest step
