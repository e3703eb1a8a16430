from __future__ import annotations

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError, QuorumError
from fedlearn.core.messages import Reply, Task
from fedlearn.core.params import ParamSet
from fedlearn.engine import Engine, EngineConfig, FaultPlan, FaultyFleet
from fedlearn.strategies import fedavg
from tests.engine.conftest import ScriptedFleet, shift_fleet


def test_dropouts_are_left_out_and_recorded(params: ParamSet) -> None:
    plan = FaultPlan(seed=3, dropout=0.5)
    fleet = FaultyFleet(shift_fleet([1.0] * 8, [1] * 8), plan)
    engine = Engine(fleet, fedavg(), EngineConfig(rounds=1, seed=0, round_timeout=0.2, min_reply_fraction=0))

    record = engine.run(engine.initial_state(params)).history[0]

    dropped = {n for n in (f"n{i}" for i in range(8)) if plan.fate(n, Task(kind="fit", round=1)) == "drop"}
    assert dropped and set(record.failures) == dropped
    assert record.replies == 8 - len(dropped)


def test_straggler_within_deadline_is_waited_for(params: ParamSet) -> None:
    plan = FaultPlan(seed=0, straggler=1.0, delay=0.05)
    engine = Engine(FaultyFleet(shift_fleet([1.0, 3.0], [1, 1]), plan), fedavg(), EngineConfig(rounds=1, seed=0))

    state = engine.run(engine.initial_state(params))

    assert state.history[0].replies == 2
    np.testing.assert_allclose(state.params["w"], 2.0)


def test_straggler_past_deadline_is_cut_off(params: ParamSet) -> None:
    plan = FaultPlan(seed=0, straggler=1.0, delay=5.0)
    config = EngineConfig(rounds=1, seed=0, round_timeout=0.1, min_reply_fraction=0)
    engine = Engine(FaultyFleet(shift_fleet([1.0], [1]), plan), fedavg(), config)

    with pytest.raises(QuorumError, match=r"no reply within 0\.1 s"):
        engine.run(engine.initial_state(params))


def test_fault_fates_depend_only_on_seed_node_and_round() -> None:
    plan = FaultPlan(seed=11, dropout=0.3, straggler=0.3)
    task = Task(kind="fit", round=4)

    first = [plan.fate(f"n{i}", task) for i in range(50)]
    second = [plan.fate(f"n{i}", task) for i in range(50)]

    assert first == second
    assert {"drop", "straggle", "ok"} == set(first)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"dropout": 1.5}, "dropout"), ({"delay": -1}, "delay"), ({"dropout": 0.6, "straggler": 0.6}, "straggler")],
)
def test_fault_plan_rejects_bad_values(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        FaultPlan(seed=0, **kwargs)


def test_partial_work_asks_some_fit_tasks_for_a_reproducible_share_of_their_steps() -> None:
    plan = FaultPlan(seed=3, partial_work=0.5)
    tasks = [Task(kind="fit", round=r, config={"local_epochs": 2}) for r in range(1, 41)]

    fractions = [plan.work_fraction("node-1", t) for t in tasks]

    partial = [f for f in fractions if f < 1]
    assert 10 < len(partial) < 30  # about half, not none and not all
    assert all(0 < f < 1 for f in partial)
    assert fractions == [FaultPlan(seed=3, partial_work=0.5).work_fraction("node-1", t) for t in tasks]


def test_partial_work_leaves_evaluate_tasks_and_the_drop_draws_alone() -> None:
    with_partial = FaultPlan(seed=3, dropout=0.3, partial_work=1.0)
    without = FaultPlan(seed=3, dropout=0.3)
    tasks = [Task(kind="fit", round=r) for r in range(1, 30)]

    assert [with_partial.fate("n", t) for t in tasks] == [without.fate("n", t) for t in tasks]
    assert with_partial.work_fraction("n", Task(kind="evaluate", round=1)) == 1.0


def test_faulty_fleet_sends_the_work_share_to_nodes_doing_partial_work(params: ParamSet) -> None:
    shares: list[float] = []

    def answer(node: str, task: Task) -> Reply:
        shares.append(float(task.config.get("work_fraction", 1.0)))
        return Reply(node_id=node, kind=task.kind, round=task.round, params=task.params, num_examples=1)

    ids = [f"n{i}" for i in range(10)]
    engine = Engine(FaultyFleet(ScriptedFleet(ids, answer), FaultPlan(seed=0, partial_work=0.9)), fedavg(),
                    EngineConfig(rounds=3, seed=0))  # fmt: skip
    engine.run(engine.initial_state(params))

    assert sum(s < 1 for s in shares) > len(shares) // 2
    assert all(0 < s <= 1 for s in shares)
