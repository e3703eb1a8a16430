"""Early replies that spill to disk in a real process pool come back as the right node's, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.client.learners import builtin_learner
from fedlearn.data.datasets import load_dataset
from fedlearn.engine import EngineConfig, stage
from fedlearn.simulation import simulate
from fedlearn.strategies import build_strategy

CLIENT = {"local_epochs": 2, "batch_size": 8, "learning_rate": 0.05}


@pytest.mark.slow
def test_pool_whose_early_replies_spill_matches_inprocess_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_dataset("digits")
    rows = np.arange(len(data))
    # Node 0 holds most rows, so its worker is busy while the other worker's replies arrive early
    # and, with a one-byte budget, all but one of them wait on disk, popped in task order.
    parts = [data.subset(rows[:900]), *(data.subset(ix) for ix in np.array_split(rows[900:], 15))]
    learner = builtin_learner("numpy.softmax", data)
    config = EngineConfig(rounds=3, seed=5, client_config=CLIENT, reorder_buffer_bytes=1)
    spills: list[bool] = []
    put = stage._ReorderBuffer.put

    def counted_put(self: stage._ReorderBuffer, reply: stage.Reply) -> bool:
        spilled = put(self, reply)
        spills.append(spilled)
        return spilled

    monkeypatch.setattr(stage._ReorderBuffer, "put", counted_put)

    def run(executor: str) -> stage.ParamSet:
        strategy = build_strategy("fedavg")
        return simulate(learner, parts, strategy, config, executor=executor, workers=2).params  # type: ignore[arg-type]

    reference = run("inprocess")
    for attempt in range(3):  # the interleaving differs from run to run; each must give the same model
        spills.clear()
        assert run("pool").bitwise_equal(reference), f"pool run {attempt} differs from in-process"
        assert sum(spills) >= 3, "the run was meant to spill early replies to disk"
