"""Secure aggregation in simulation: every server transform, SCAFFOLD and FedProx, faults, executors, history."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fedlearn.client.learners import builtin_learner
from fedlearn.client.node_app import NodeApp
from fedlearn.config import parse_config
from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import FIT, Task
from fedlearn.core.params import ParamSet
from fedlearn.data.datasets import load_dataset
from fedlearn.data.partition import partition
from fedlearn.engine import EngineConfig, FaultPlan
from fedlearn.engine.history import RoundRecord, history_from_json, history_to_csv, history_to_json
from fedlearn.privacy.protocol import SecureAggregation
from fedlearn.simulation import simulate
from fedlearn.simulation.from_config import plan_simulation
from fedlearn.strategies import Strategy, build_strategy, coordinate_median, krum, trimmed_mean

CLIENT = {"local_epochs": 1, "batch_size": 16, "learning_rate": 0.05}
SECURE = SecureAggregation(clip=10.0, max_weight=1000, dropout_fraction=0.4)


def _iris(nodes: int):
    data = load_dataset("iris")
    return builtin_learner("numpy.softmax", data), [data.subset(ix) for ix in partition("iid", data, nodes, seed=0)]


@pytest.mark.parametrize(
    ("name", "options"),
    [("fedavg", {}), ("fedavgm", {}), ("fedadam", {}), ("fedyogi", {}), ("fedadagrad", {}), ("scaffold", {}),
     ("fedprox", {"mu": 0.5})],
)  # fmt: skip
def test_secure_rounds_match_plain_rounds_for_every_transform(name, options):
    learner, parts = _iris(6)
    config = EngineConfig(rounds=2, seed=1, client_config=CLIENT)
    strategy = build_strategy(name, **options)

    plain = simulate(learner, parts, strategy, config)
    secure = simulate(learner, parts, replace(strategy, secure_aggregation=SECURE), config)

    for key, value in plain.params.items():
        np.testing.assert_allclose(secure.params[key], value, atol=1e-4)
    if strategy.control_variates:
        control = {k: v for k, v in secure.state.strategy_state.items() if k.startswith("scaffold/c/")}
        assert control and any(np.abs(v).max() > 0 for v in control.values())
    assert [(r.secure, r.survived, r.dropped) for r in secure.history] == [(True, 6, 0)] * 2


@pytest.mark.parametrize("reducer", [coordinate_median(), trimmed_mean(0.1), krum(1)])
def test_reducers_that_need_individual_updates_are_refused(reducer):
    with pytest.raises(ConfigError, match="needs each node's individual update"):
        replace(build_strategy("fedavg"), reducer=reducer, secure_aggregation=SECURE)


def test_a_reducer_other_than_a_mean_is_refused():
    class Sum:  # streams, but is not a mean
        streaming = True

        def init(self, template):
            return template

        def add(self, acc, model, weight):
            return acc

        def result(self, acc):
            return acc

    with pytest.raises(ConfigError, match="weighted mean reducer"):
        Strategy(name="x", sampler=build_strategy("fedavg").sampler, reducer=Sum(),
                 transform=build_strategy("fedavg").transform, secure_aggregation=SECURE)  # fmt: skip


def _faulty_run(executor: str, workers: int = 2):
    learner, parts = _iris(20)
    config = EngineConfig(rounds=3, seed=1, round_timeout=0.3, min_reply_fraction=0, client_config=CLIENT)
    strategy = replace(build_strategy("fedadam"), secure_aggregation=SECURE)
    faults = FaultPlan(seed=6, dropout=0.3)  # 5, 7 and 7 of 20 nodes drop out; 8 may
    return simulate(learner, parts, strategy, config, faults=faults, executor=executor, workers=workers)


@pytest.mark.slow
def test_same_seed_gives_bit_identical_models_across_executors_at_30_percent_dropout():
    reference = _faulty_run("inprocess")

    pooled = _faulty_run("pool", workers=2)

    assert pooled.params.bitwise_equal(reference.params)
    assert [(r.survived, r.dropped) for r in reference.history] == [(15, 5), (13, 7), (13, 7)]
    assert [(r.survived, r.dropped) for r in pooled.history] == [(15, 5), (13, 7), (13, 7)]


def test_a_node_that_requires_secure_aggregation_refuses_a_plain_fit():
    learner, parts = _iris(1)
    node = NodeApp(node_id="a", trainer=learner.trainer(parts[0]), require_secure_aggregation=True)

    reply = node.handle(Task(kind=FIT, round=1, params=learner.init_params(0)))

    assert "refuses to send its update in the clear" in reply.error


def test_history_records_secure_rounds_and_reads_older_records():
    record = RoundRecord(round=1, sampled=5, replies=4, num_examples=9, duration_s=0.1, bytes_sent=1,
                         bytes_received=2, secure=True, survived=4, dropped=1)  # fmt: skip
    older = {k: v for k, v in RoundRecord(round=2, sampled=1, replies=1, num_examples=1, duration_s=0.0,
                                          bytes_sent=0, bytes_received=0).to_json().items()
             if k not in ("secure", "survived", "dropped")}  # fmt: skip

    restored = history_from_json(history_to_json([record]))
    legacy = RoundRecord.from_json(older)

    assert restored == [record]
    assert (legacy.secure, legacy.survived, legacy.dropped) == (False, None, None)
    assert history_to_csv([legacy]).splitlines()[0].split(",")[:7][-1] == "bytes_received"
    assert "survived" not in history_to_csv([legacy]) and "survived" in history_to_csv([record])


def test_the_run_toml_section_turns_secure_aggregation_on():
    config = parse_config(
        {"data": {"dataset": "iris", "nodes": 6},
         "privacy": {"secure_aggregation": {"enabled": True, "clip": 5.0, "dropout_fraction": 0.2}}}
    )  # fmt: skip

    piece = plan_simulation(config).strategy.secure_aggregation

    assert piece == SecureAggregation(clip=5.0, dropout_fraction=0.2)


def test_a_toml_config_that_could_overflow_is_refused_naming_what_to_change():
    config = parse_config(
        {"data": {"dataset": "iris", "nodes": 6},
         "privacy": {"secure_aggregation": {"enabled": True, "max_weight": 2**40, "fraction_bits": 20}}}
    )  # fmt: skip

    with pytest.raises(ConfigError, match=r"\[privacy.secure_aggregation\].*lower `max_weight` to at most"):
        plan_simulation(config)


def test_secure_aggregation_refuses_a_threshold_that_is_unsafe():
    with pytest.raises(ConfigError, match="threshold"):
        SecureAggregation(degree=4, threshold=2).check(20)


def test_the_aggregate_is_handed_over_as_one_summed_reply():
    learner, parts = _iris(4)
    config = EngineConfig(rounds=1, seed=1, client_config=CLIENT)

    result = simulate(learner, parts, replace(build_strategy("fedavg"), secure_aggregation=SECURE), config)

    assert result.history[0].num_examples == sum(len(p) for p in parts)
    assert isinstance(result.params, ParamSet)


def test_the_toml_section_makes_the_engine_require_secure_aggregation():
    from fedlearn.config import engine_config

    config = parse_config({"privacy": {"secure_aggregation": {"enabled": True}}})

    assert engine_config(config).require_secure_aggregation


def _stage_faulty_run(executor: str):
    from fedlearn.core.messages import SECAGG_MASKED_INPUT, SECAGG_UNMASK
    from fedlearn.engine import Engine
    from fedlearn.simulation.run import learner_nodes, make_fleet, secure_nodes
    from tests.engine.secure_helpers import StageDrops

    learner, parts = _iris(10)
    ids, factory = learner_nodes(learner, parts)
    factory, registry = secure_nodes(ids, factory)
    drops = {SECAGG_MASKED_INPUT: {ids[2]}, SECAGG_UNMASK: {ids[4], ids[7]}}
    fleet = StageDrops(make_fleet(ids, factory, executor=executor, workers=2), drops=drops, record=False)
    strategy = replace(build_strategy("fedyogi"), secure_aggregation=SECURE)
    engine = Engine(fleet, strategy, EngineConfig(rounds=2, seed=4, client_config=CLIENT), identity_keys=registry)
    try:
        return engine.run(engine.initial_state(learner.init_params(4)))
    finally:
        fleet.close()


def test_dropouts_after_masking_give_bit_identical_models_across_executors():
    reference = _stage_faulty_run("inprocess")

    pooled = _stage_faulty_run("pool")

    assert pooled.params.bitwise_equal(reference.params)
    assert [(r.survived, r.dropped) for r in pooled.history] == [(9, 1), (9, 1)]
