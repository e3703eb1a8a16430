"""Revoking a node ends its live session within a second: it is sent nothing more and its reply is refused."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError, StoreError
from fedlearn.core.messages import Task
from fedlearn.core.params import ParamSet
from tests.runtime.transport import conftest
from tests.runtime.transport.conftest import AgentThread, Coordinator, ShiftHandler, receive_all, wait_until

StartCoordinator = Callable[..., Coordinator]
StartAgent = Callable[..., AgentThread]
TASK = Task(kind="fit", round=1, params=ParamSet({"w": np.ones(8, np.float32)}))


@pytest.fixture
def revoke_c() -> Iterator[Callable[[], None]]:
    """Revoke node c in the (test) token store, as `fedlearn nodes revoke c` does in the real one."""
    yield lambda: conftest.TOKENS.__setitem__("c", "revoked")
    conftest.TOKENS["c"] = "token-c"


def test_revoking_a_connected_node_ends_its_session_within_a_second(
    start_coordinator: StartCoordinator, start_agent: StartAgent, revoke_c: Callable[[], None]
) -> None:
    coordinator = start_coordinator(heartbeat_interval=2.0, heartbeat_timeout=6.0)  # the CLI's timings
    agent = start_agent(coordinator, "c")
    wait_until(lambda: coordinator.fleet.available() == ["c"])

    revoke_c()
    started = time.monotonic()
    wait_until(lambda: coordinator.fleet.available() == [], timeout=5)
    took = time.monotonic() - started
    assert agent.thread is not None
    agent.thread.join(timeout=5)

    assert took < 1.0
    assert isinstance(agent.error, ConfigError) and "revoked token" in str(agent.error)
    assert coordinator.statuses == [("c", True), ("c", False)]


def test_a_revoked_nodes_reply_in_flight_is_refused_and_it_is_sent_no_more_tasks(
    start_coordinator: StartCoordinator, start_agent: StartAgent, revoke_c: Callable[[], None]
) -> None:
    coordinator = start_coordinator()
    handler = ShiftHandler(delay=1.0)
    start_agent(coordinator, "c", handler)
    wait_until(lambda: coordinator.fleet.available() == ["c"])
    coordinator.fleet.send("c", TASK)
    wait_until(lambda: len(handler.tasks) == 1)  # the node is now computing its reply

    revoke_c()
    [reply] = receive_all(coordinator.fleet, 1, timeout=5)
    coordinator.fleet.send("c", TASK)
    [next_reply] = receive_all(coordinator.fleet, 1, timeout=5)
    time.sleep(1.0)  # the node finishes and tries to upload

    assert reply.error == "node c disconnected before replying: its token was revoked or rotated"
    assert next_reply.error == "node c is not connected"
    assert coordinator.fleet.receive(timeout=0.1) == []
    assert coordinator.fleet.stats.uploads == 0 and len(handler.tasks) == 1


def test_a_store_that_cannot_check_tokens_leaves_sessions_open_and_says_so_once(
    start_coordinator: StartCoordinator, start_agent: StartAgent, caplog: pytest.LogCaptureFixture
) -> None:
    coordinator = start_coordinator()
    start_agent(coordinator, "a")
    wait_until(lambda: coordinator.fleet.available() == ["a"])

    def store_down(node: str, token: str) -> bool:
        raise StoreError("the store at sqlite:///x.db failed: disk I/O error")

    with caplog.at_level(logging.WARNING, logger="fedlearn.runtime.grpc_fleet"):
        coordinator.fleet.authenticate = store_down
        time.sleep(1.6)  # three passes of the check
        still_there = coordinator.fleet.available()
        coordinator.fleet.authenticate = conftest.authenticate

    assert still_there == ["a"]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]  # whatever the root logger's level
    assert [r.getMessage() for r in warnings] == [
        "cannot re-check node tokens, sessions stay open meanwhile: the store at sqlite:///x.db failed: disk I/O error"
    ]
