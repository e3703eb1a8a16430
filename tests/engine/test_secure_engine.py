"""The engine runs SecAgg+ rounds through its strategy: dropouts at any stage, history, checkpoints."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import SECAGG_CONSISTENCY, SECAGG_MASKED_INPUT, SECAGG_SHARE, SECAGG_UNMASK
from fedlearn.engine import Engine, EngineConfig
from fedlearn.privacy.protocol import SecureAggregation
from fedlearn.strategies import build_strategy
from tests.engine.secure_helpers import federation

SECURE = SecureAggregation(clip=1.0, max_weight=100, bits=64, dropout_fraction=0.3)


def test_fedavg_over_secure_rounds_with_30_percent_dropped_at_late_stages():
    drops = {SECAGG_SHARE: {"n01"}, SECAGG_MASKED_INPUT: {"n05"}, SECAGG_UNMASK: {"n08"}}
    fed = federation(10, seed=8, drops=drops)
    strategy = replace(build_strategy("fedavg"), secure_aggregation=SECURE)
    engine = Engine(fed.fleet, strategy, EngineConfig(rounds=2, seed=3), identity_keys=fed.registry)

    final = engine.run(engine.initial_state(fed.params))

    survivors = [u for u in fed.ids if u not in ("n01", "n05")]
    mean, total = fed.expected_mean(survivors, SECURE.clip)
    for name, value in fed.params.items():
        np.testing.assert_allclose(final.params[name], value + 2 * mean[name], atol=1e-9)
    assert [(r.secure, r.survived, r.dropped, r.num_examples) for r in final.history] == [(True, 8, 2, total)] * 2
    assert {"n01", "n05", "n08"} <= set(final.history[0].failures)
    assert final.history[0].contributors == tuple(sorted(survivors))  # n08 left at unmasking; its input is summed


def test_a_round_beyond_the_dropout_fraction_fails_and_changes_nothing():
    fed = federation(10, drops={SECAGG_CONSISTENCY: {"n01", "n02", "n03", "n04"}})
    strategy = replace(build_strategy("fedavg"), secure_aggregation=SECURE)
    saved = []
    engine = Engine(fed.fleet, strategy, EngineConfig(rounds=1, seed=3), identity_keys=fed.registry,
                    checkpoint=saved.append)  # fmt: skip

    with pytest.raises(Exception, match="dropout_fraction"):
        engine.run(engine.initial_state(fed.params))
    assert saved == []


def test_an_engine_without_identity_keys_refuses_a_secure_strategy():
    fed = federation(3)
    strategy = replace(build_strategy("fedavg"), secure_aggregation=SECURE)

    with pytest.raises(ConfigError, match="identity_keys"):
        Engine(fed.fleet, strategy, EngineConfig(rounds=1, seed=0))


def test_an_engine_whose_run_requires_secure_aggregation_refuses_a_plain_strategy():
    fed = federation(3)
    config = EngineConfig(rounds=1, seed=0, require_secure_aggregation=True)

    with pytest.raises(ConfigError, match="aggregated in the clear"):
        Engine(fed.fleet, build_strategy("fedavg"), config)
