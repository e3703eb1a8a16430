"""A node logs one line per task it answers: what, for which run and round, how long, and how it went."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pytest

from fedlearn.core.messages import Reply, Task
from fedlearn.core.params import ParamSet
from tests.runtime.transport.conftest import AgentThread, Coordinator, ShiftHandler, receive_all, wait_until


class _FitOnly(ShiftHandler):
    def handle(self, task: Task) -> Reply:
        if task.kind != "fit":
            return Reply(node_id="a", kind=task.kind, round=task.round, error=f"unknown task kind {task.kind!r}")
        return super().handle(task)


def test_each_task_answered_is_one_log_line(
    start_coordinator: Callable[..., Coordinator],
    start_agent: Callable[..., AgentThread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    coordinator = start_coordinator()
    start_agent(coordinator, "a", handler=_FitOnly())
    wait_until(lambda: coordinator.fleet.available() == ["a"])
    params = ParamSet({"w": np.ones(4, np.float32)})

    with caplog.at_level(logging.INFO, logger="fedlearn.runtime.agent"):
        coordinator.fleet.send("a", Task(kind="fit", round=3, run_id="r1", params=params))
        coordinator.fleet.send("a", Task(kind="no-such-kind", round=3, run_id="r1"))
        receive_all(coordinator.fleet, 2)

    lines = [r.getMessage() for r in caplog.records if "task of run" in r.getMessage()]
    assert len(lines) == 2
    assert lines[0].startswith("node a: fit task of run r1 round 3: answered in ")
    assert lines[1].startswith("node a: no-such-kind task of run r1 round 3: refused or failed in ")
