"""The same seed gives bit-identical parameters whichever executor or worker count runs it."""

from __future__ import annotations

import pytest

from fedlearn.client.learners import builtin_learner
from fedlearn.data.datasets import load_dataset
from fedlearn.data.partition import partition
from fedlearn.engine import EngineConfig, FaultPlan
from fedlearn.simulation import simulate
from fedlearn.strategies import build_strategy

CLIENT = {"local_epochs": 1, "batch_size": 16, "learning_rate": 0.05}
CASES = [
    ("numpy.softmax", "fedavg", {}),
    ("numpy.softmax", "scaffold", {}),
    ("numpy.softmax", "fedprox", {"mu": 0.5}),
    ("sklearn.sgd", "fedadam", {"fraction": 0.5}),
    ("sklearn.mlp", "fedyogi", {}),
    ("torch.mlp", "fedavgm", {}),
]


def _run(learner_name: str, strategy_name: str, options: dict[str, object], executor: str, workers: int):
    if learner_name.startswith("torch"):
        pytest.importorskip("torch")
    data = load_dataset("digits")
    parts = partition("dirichlet", data, 6, seed=3, alpha=0.5)
    learner = builtin_learner(learner_name, data)
    result = simulate(
        learner,
        [data.subset(ix) for ix in parts],
        build_strategy(strategy_name, **options),
        EngineConfig(rounds=3, seed=5, client_config=CLIENT),
        executor=executor,  # type: ignore[arg-type]
        workers=workers,
    )
    return result.params


@pytest.mark.slow
@pytest.mark.parametrize(("learner_name", "strategy_name", "options"), CASES)
def test_pool_with_any_worker_count_matches_inprocess_bit_for_bit(
    learner_name: str, strategy_name: str, options: dict[str, object]
) -> None:
    reference = _run(learner_name, strategy_name, options, "inprocess", 1)

    for workers in (1, 2, 3):
        pooled = _run(learner_name, strategy_name, options, "pool", workers)
        assert pooled.bitwise_equal(reference), f"pool with {workers} workers differs"


def test_dropouts_and_stragglers_are_reproducible_across_executors() -> None:
    data = load_dataset("iris")
    parts = [data.subset(ix) for ix in partition("iid", data, 8, seed=0)]
    learner = builtin_learner("numpy.softmax", data)
    config = EngineConfig(rounds=2, seed=1, round_timeout=0.5, min_reply_fraction=0, client_config=CLIENT)
    faults = FaultPlan(seed=1, dropout=0.25, straggler=0.25, delay=0.05)

    results = [
        simulate(learner, parts, build_strategy("fedavg"), config, executor=executor, workers=2, faults=faults)
        for executor in ("inprocess", "pool")
    ]

    assert results[0].params.bitwise_equal(results[1].params)
    assert [dict(r.failures) for r in results[0].history] == [dict(r.failures) for r in results[1].history]
    assert any(r.failures for r in results[0].history)
