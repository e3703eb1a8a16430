"""Every attack really hurts FedAvg in a simulated run, so that an attack that does nothing fails here.

Ten nodes share digits and train a small perceptron for eight rounds, IID or with strong label
skew (Dirichlet 0.1). The attacks that estimate benign statistics were built to slip past robust
rules, not to wreck a plain mean, and a mean of IID updates leaves them little room: min-max and
min-sum may stray only as far as benign updates spread, which is far only when the data is
skewed, so they are tested there with the papers' settings; ALIE's shift is tested at z = 3 (the
paper's z_max for 3 of 10 nodes is 0.52), and IPM at an epsilon beyond (n - f) / f, where the
mean's inner product with the benign direction turns negative. docs/robustness.md shows what
the papers' settings do to every defence.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

import pytest

from fedlearn.client.learners import builtin_learner
from fedlearn.data.split import split_over_nodes
from fedlearn.engine import EngineConfig
from fedlearn.privacy.protocol import SecureAggregation
from fedlearn.simulation import simulate
from fedlearn.simulation.attacks import attack_plan, backdoor_success, choose_attackers
from fedlearn.simulation.run import node_ids
from fedlearn.strategies import fedavg, krum

NODES, ROUNDS = 10, 8
CLIENT = {"local_epochs": 2, "batch_size": 16, "learning_rate": 0.1}


SPLITS = {"iid": {"partitioner": "iid"}, "skewed": {"partitioner": "dirichlet", "partition_options": {"alpha": 0.1}}}
CASES = {  # attack: the split it is tested on, the share of attackers and its options
    "sign_flip": ("iid", 0.3, {}),
    "scaling": ("iid", 0.3, {}),
    "gaussian": ("iid", 0.3, {}),
    "label_flip": ("iid", 0.4, {}),
    "alie": ("skewed", 0.3, {"z": 3.0}),
    "ipm": ("iid", 0.3, {"epsilon": 4.0}),
    "min_max": ("skewed", 0.3, {}),
    "min_sum": ("skewed", 0.3, {}),
}


@functools.cache
def federation(split: str) -> tuple[Any, list, Any]:
    parts, test = split_over_nodes("digits", nodes=NODES, test_fraction=0.25, seed=0, **SPLITS[split])
    return builtin_learner("numpy.mlp", test, hidden=[16]), parts, test


def run(split: str, attack: str | None = None, *, fraction: float = 0.3, **options: Any) -> tuple[float, float | None]:
    """The final test accuracy, and the backdoor's success for a backdoor attack."""
    learner, parts, test = federation(split)
    plan = None
    if attack is not None:
        plan = attack_plan(node_ids(NODES), name=attack, seed=0, fraction=fraction, options=options)
    config = EngineConfig(rounds=ROUNDS, seed=1, client_config=CLIENT)
    result = simulate(learner, parts, fedavg(), config, test_data=test, attack=plan)
    assert not any(record.failures for record in result.history)
    success = backdoor_success(learner, result.params, test, plan.attack) if plan is not None else None
    return result.history[-1].central_metrics["accuracy"], success


@functools.cache
def clean(split: str) -> float:
    accuracy, _ = run(split)
    assert accuracy > 0.85
    return accuracy


@pytest.mark.parametrize("attack", list(CASES))
def test_attack_lowers_fedavgs_accuracy_clearly(attack: str) -> None:
    split, fraction, options = CASES[attack]

    accuracy, _ = run(split, attack, fraction=fraction, **options)

    assert accuracy < clean(split) - 0.1


def test_backdoor_plants_its_trigger_in_fedavgs_model_without_costing_accuracy() -> None:
    accuracy, success = run("iid", "backdoor")

    assert success is not None and success > 0.8
    assert accuracy > clean("iid") - 0.05  # the main task looks healthy: the attack hides in plain sight


@pytest.mark.parametrize("knowledge", ["colluders", "omniscient", "own"])
def test_colluding_attackers_give_bit_identical_models_in_process_and_in_a_pool(knowledge: str) -> None:
    learner, parts, _ = federation("skewed")
    plan = attack_plan(node_ids(NODES), name="min_max", seed=0, fraction=0.3, knowledge=knowledge)
    config = EngineConfig(rounds=2, seed=1, client_config=CLIENT)

    models = [
        simulate(learner, parts, fedavg(), config, attack=plan, executor=executor, workers=2).params
        for executor in ("inprocess", "pool")
    ]

    assert models[0].bitwise_equal(models[1])


def test_choose_attackers_rounds_halves_up_and_draws_the_same_nodes_for_the_same_seed() -> None:
    ids = node_ids(25)

    assert len(choose_attackers(ids, fraction=0.1, seed=0)) == 3  # 2.5 rounds up
    assert len(choose_attackers(ids, fraction=0.01, seed=0)) == 1  # any attack has an attacker
    assert choose_attackers(ids, fraction=0.0, seed=0) == ()
    assert choose_attackers(ids, fraction=0.2, seed=4) == choose_attackers(ids, fraction=0.2, seed=4)
    assert choose_attackers(ids, fraction=0.2, seed=4) != choose_attackers(ids, fraction=0.2, seed=5)


def test_attackers_under_secure_aggregation_spoil_the_sum_the_coordinator_cannot_inspect() -> None:
    learner, parts, test = federation("iid")
    strategy = replace(fedavg(), secure_aggregation=SecureAggregation(clip=1.0, max_weight=1000))
    config = EngineConfig(rounds=ROUNDS, seed=1, client_config=CLIENT, require_secure_aggregation=True)
    plan = attack_plan(node_ids(NODES), name="sign_flip", seed=0, fraction=0.3)

    result = simulate(learner, parts, strategy, config, test_data=test, attack=plan)

    assert all(record.secure for record in result.history)
    assert result.history[-1].central_metrics["accuracy"] < clean("iid") - 0.5


def test_ipm_at_the_papers_epsilon_passes_krum_and_drags_the_model_down() -> None:
    learner, parts, test = federation("iid")
    config = EngineConfig(rounds=ROUNDS, seed=1, client_config=CLIENT)
    plan = attack_plan(node_ids(NODES), name="ipm", seed=0, fraction=0.3)  # epsilon = 0.1, as Xie et al.

    accuracy = [
        simulate(learner, parts, fedavg(reducer=krum(3)), config, test_data=test, attack=attack)
        .history[-1]
        .central_metrics["accuracy"]
        for attack in (None, plan)
    ]

    assert accuracy[1] < accuracy[0] - 0.1
