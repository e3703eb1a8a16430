from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from fedlearn.core.messages import Reply, Task
from fedlearn.core.params import ParamSet
from fedlearn.engine import Engine, EngineConfig
from fedlearn.simulation.inprocess import InProcessFleet
from fedlearn.simulation.pool import ProcessPoolFleet
from fedlearn.simulation.shared import SHM_DIR, SHM_PREFIX
from fedlearn.strategies import fedavg


class WriterNode:
    """Tries to write into the parameters it received, which must be impossible."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id

    def handle(self, task: Task) -> Reply:
        task.params["w"][0] = 1.0
        return Reply(node_id=self.node_id, kind=task.kind, round=task.round, params=task.params, num_examples=1)


class CountingNode:
    """Returns params + the number of tasks it has handled: state that must stay on one worker."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.calls = 0

    def handle(self, task: Task) -> Reply:
        self.calls += 1
        params = task.params.map(lambda a: a + np.float32(self.calls))
        return Reply(node_id=self.node_id, kind=task.kind, round=task.round, params=params, num_examples=1)


class SlowNode(CountingNode):
    """Node ``a`` takes long enough that a SIGKILL always lands mid-task."""

    def handle(self, task: Task) -> Reply:
        if self.node_id == "a":
            time.sleep(30)
        return super().handle(task)


def _shm_entries() -> set[str]:
    """This process's pools' blocks, whatever other processes (other test workers) have in /dev/shm."""
    return {name for name in os.listdir(SHM_DIR) if name.startswith(f"{SHM_PREFIX}{os.getpid()}_")}


@pytest.fixture
def params() -> ParamSet:
    return ParamSet({"w": np.zeros(1000, np.float32)})


def test_pool_gives_same_params_as_inprocess_with_stateful_nodes(params: ParamSet) -> None:
    ids = [f"n{i}" for i in range(5)]
    config = EngineConfig(rounds=3, seed=0)
    results = []
    for fleet in (InProcessFleet(ids, CountingNode), ProcessPoolFleet(ids, CountingNode, workers=2)):
        with_engine = Engine(fleet, fedavg(), config)
        results.append(with_engine.run(with_engine.initial_state(params)).params)
        fleet.close()

    assert results[0].bitwise_equal(results[1])
    np.testing.assert_allclose(results[1]["w"], 1 + 2 + 3)


def test_pool_workers_receive_read_only_params(params: ParamSet) -> None:
    with ProcessPoolFleet(["a"], WriterNode, workers=1) as fleet:
        fleet.send("a", Task(kind="fit", round=1, params=params))
        replies = _receive_all(fleet, 1)

    assert "read-only" in (replies[0].error or "")


def test_pool_worker_killed_mid_run_turns_its_tasks_into_failures(params: ParamSet) -> None:
    ids = [f"n{i}" for i in range(4)]
    with ProcessPoolFleet(ids, CountingNode, workers=2) as fleet:
        victim = fleet._home["n1"].process  # n1 and n3 live in worker 1
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(timeout=5)
        config = EngineConfig(rounds=1, seed=0, min_reply_fraction=0, min_available_nodes=1)
        engine = Engine(fleet, fedavg(), config)

        record = engine.run(engine.initial_state(params)).history[0]
        available = set(fleet.available())

    assert record.replies == 2
    assert available == {"n0", "n2"}


def test_pool_reports_failures_of_a_worker_that_dies_while_busy(params: ParamSet) -> None:
    with ProcessPoolFleet(["a", "b"], SlowNode, workers=2) as fleet:
        worker = fleet._home["a"].process
        fleet.send("a", Task(kind="fit", round=1, params=params))
        time.sleep(0.2)
        os.kill(worker.pid, signal.SIGKILL)
        fleet.send("b", Task(kind="fit", round=1, params=params))
        replies = {r.node_id: r for r in _receive_all(fleet, 2)}

    assert replies["b"].ok
    assert replies["a"].error is not None and "exited" in replies["a"].error


def test_pool_releases_shared_memory(params: ParamSet) -> None:
    before = _shm_entries()
    fleet = ProcessPoolFleet(["a", "b"], CountingNode, workers=2)
    engine = Engine(fleet, fedavg(), EngineConfig(rounds=3, seed=0))
    engine.run(engine.initial_state(params))

    fleet.close()

    assert _shm_entries() <= before


def _receive_all(fleet: ProcessPoolFleet, count: int) -> list[Reply]:
    replies: list[Reply] = []
    deadline = time.monotonic() + 10
    while len(replies) < count and time.monotonic() < deadline:
        replies += fleet.receive(timeout=0.5)
    return replies


def test_pool_reuses_a_reply_slot_once_the_reply_is_dropped(params: ParamSet) -> None:
    with ProcessPoolFleet(["a"], CountingNode, workers=1) as fleet:
        for round_number in range(1, 6):
            fleet.send("a", Task(kind="fit", round=round_number, params=params))
            (reply,) = _receive_all(fleet, 1)
            assert reply.ok
            del reply
        mapped = len(fleet._workers[0].slots._mappings)

    assert mapped == 1


def test_pool_reply_still_held_is_never_overwritten_by_later_replies(params: ParamSet) -> None:
    with ProcessPoolFleet(["a"], CountingNode, workers=1) as fleet:
        fleet.send("a", Task(kind="fit", round=1, params=params))
        (held,) = _receive_all(fleet, 1)
        for round_number in range(2, 6):
            fleet.send("a", Task(kind="fit", round=round_number, params=params))
            (later,) = _receive_all(fleet, 1)
            np.testing.assert_array_equal(later.params["w"], round_number)
            del later

        np.testing.assert_array_equal(held.params["w"], 1)


class _AnswersOnceThenHangs(CountingNode):
    def handle(self, task: Task) -> Reply:
        if self.calls >= 1:
            time.sleep(60)
        return super().handle(task)


def _reply_slots() -> set[str]:
    """Workers' reply slots, not the parent's published blocks."""
    return {name for name in _shm_entries() if "_reply_" in name}


def test_closing_a_pool_whose_worker_hangs_in_a_task_leaves_no_reply_slot_behind(params: ParamSet) -> None:
    before = _reply_slots()
    fleet = ProcessPoolFleet(["a"], _AnswersOnceThenHangs, workers=1)
    fleet.send("a", Task(kind="fit", round=1, params=params))  # answered into a slot the parent never maps
    fleet.send("a", Task(kind="fit", round=2, params=params))  # the worker then hangs in this one
    deadline = time.monotonic() + 10
    while not _reply_slots() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    written = _reply_slots() - before
    assert written, "the worker was meant to have written a reply slot"

    fleet.close()

    assert not written & _reply_slots()
