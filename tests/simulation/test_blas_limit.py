"""Simulated nodes compute with the pinned BLAS thread count, and the caller's count comes back."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from fedlearn.core.messages import Reply, Task
from fedlearn.core.params import ParamSet
from fedlearn.simulation.inprocess import InProcessFleet
from fedlearn.simulation.pool import ProcessPoolFleet

CALLER_THREADS = 2  # any count other than the nodes' 1, so that a missing limit shows


def blas_threads() -> int:
    return min(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas")


class ThreadReportingNode:
    """Reports, as a metric, how many BLAS threads it computed with."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id

    def handle(self, task: Task) -> Reply:
        metrics = {"blas_threads": float(blas_threads())}
        return Reply(node_id=self.node_id, kind=task.kind, round=task.round, params=task.params, metrics=metrics)


@pytest.fixture
def caller_threads() -> object:
    np.ones(1) @ np.ones(1)  # BLAS is loaded before it can be limited
    with threadpool_limits(CALLER_THREADS, user_api="blas"):
        yield


def run_tasks(fleet: InProcessFleet | ProcessPoolFleet, count: int) -> list[Reply]:
    params = ParamSet({"w": np.zeros(3)})
    for i in range(count):
        fleet.send(f"n{i}", Task(kind="fit", round=1, params=params))
    replies: list[Reply] = []
    while len(replies) < count:
        replies += fleet.receive(timeout=5)
    return replies


@pytest.mark.usefixtures("caller_threads")
def test_inprocess_nodes_compute_with_one_blas_thread() -> None:
    fleet = InProcessFleet(["n0", "n1", "n2"], ThreadReportingNode)

    replies = run_tasks(fleet, 3)

    assert [r.metrics["blas_threads"] for r in replies] == [1.0, 1.0, 1.0]


@pytest.mark.usefixtures("caller_threads")
def test_inprocess_gives_the_blas_threads_back_once_its_queue_drains() -> None:
    fleet = InProcessFleet(["n0", "n1"], ThreadReportingNode)

    run_tasks(fleet, 2)

    assert blas_threads() == CALLER_THREADS


@pytest.mark.usefixtures("caller_threads")
def test_inprocess_close_gives_the_blas_threads_back_with_tasks_still_queued() -> None:
    fleet = InProcessFleet(["n0", "n1"], ThreadReportingNode)
    params = ParamSet({"w": np.zeros(3)})
    fleet.send("n0", Task(kind="fit", round=1, params=params))
    fleet.send("n1", Task(kind="fit", round=1, params=params))
    fleet.receive(timeout=5)  # one of two: the limit is still held

    fleet.close()

    assert blas_threads() == CALLER_THREADS


@pytest.mark.usefixtures("caller_threads")
def test_pool_workers_compute_with_one_blas_thread() -> None:
    with ProcessPoolFleet(["n0", "n1", "n2"], ThreadReportingNode, workers=2) as fleet:
        replies = run_tasks(fleet, 3)

    assert [r.metrics["blas_threads"] for r in replies] == [1.0, 1.0, 1.0]
