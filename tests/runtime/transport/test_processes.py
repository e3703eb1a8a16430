"""Node agents as real processes: SIGKILL mid-round, refusal on exit, and whole FedAvg runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
import pytest

from fedlearn.core.messages import Task
from fedlearn.core.params import ParamSet
from fedlearn.engine import Engine, EngineConfig
from fedlearn.simulation.inprocess import InProcessFleet
from fedlearn.strategies import fedavg
from tests.runtime.transport.conftest import TOKENS, Coordinator, receive_all, wait_until
from tests.runtime.transport.node_main import build_app

ROOT = Path(__file__).resolve().parents[3]
NODES = {"a": (1.0, 10), "b": (2.0, 20), "c": (4.0, 30)}  # offset, examples

StartCoordinator = Callable[..., Coordinator]
SpawnNode = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def spawn_node(tmp_path: Path) -> Iterator[SpawnNode]:
    processes: list[subprocess.Popen[str]] = []
    logs: list[IO[str]] = []

    def spawn(
        coordinator: Coordinator, name: str, *, token: str | None = None, delay: float = 0.0, hog: float = 0.0
    ) -> subprocess.Popen[str]:
        offset, examples = NODES[name]
        command = [
            sys.executable, "-m", "tests.runtime.transport.node_main",
            "--coordinator", coordinator.address, "--name", name, "--token", token or TOKENS[name],
            "--offset", str(offset), "--examples", str(examples), "--delay", str(delay), "--hog", str(hog),
        ]  # fmt: skip
        log = (tmp_path / f"{name}.log").open("w")
        logs.append(log)
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
        processes.append(process)
        return process

    yield spawn
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for log in logs:
        log.close()


@pytest.fixture
def params() -> ParamSet:
    rng = np.random.default_rng(7)
    return ParamSet({"w": rng.standard_normal((50, 20)).astype(np.float32), "b": np.zeros(20, np.float32)})


def test_node_killed_mid_task_turns_into_error_reply_and_goes_offline(
    start_coordinator: StartCoordinator, spawn_node: SpawnNode, params: ParamSet
) -> None:
    coordinator = start_coordinator()
    victim = spawn_node(coordinator, "a", delay=60.0)
    for name in "bc":
        spawn_node(coordinator, name)
    wait_until(lambda: len(coordinator.fleet.available()) == 3, timeout=20)
    config = EngineConfig(rounds=1, seed=0, round_timeout=60, min_replies=2, min_reply_fraction=0.5)
    engine = Engine(coordinator.fleet, fedavg(), config)

    def kill_once_everyone_has_the_task() -> None:
        wait_until(lambda: coordinator.fleet.stats.downloads >= 3, timeout=20)
        os.kill(victim.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_once_everyone_has_the_task, daemon=True)
    killer.start()
    record = engine.round(engine.initial_state(params)).history[0]
    killer.join()

    assert record.replies == 2
    assert "a" in record.failures and "disconnected" in record.failures["a"]
    assert record.duration_s < 10  # far less than node a's 60 s task or the 60 s round timeout
    assert coordinator.fleet.available() == ["b", "c"]
    wait_until(lambda: ("a", False) in coordinator.statuses, timeout=10)  # the store hook runs after the session ends


def test_frozen_node_with_an_open_task_is_dropped_by_the_transport_keepalive(
    start_coordinator: StartCoordinator, spawn_node: SpawnNode, params: ParamSet
) -> None:
    coordinator = start_coordinator()
    frozen = spawn_node(coordinator, "a", delay=30.0)
    wait_until(lambda: coordinator.fleet.available() == ["a"], timeout=20)
    coordinator.fleet.send("a", Task(kind="fit", round=1, params=params))
    wait_until(lambda: coordinator.fleet.stats.downloads == 1)

    os.kill(frozen.pid, signal.SIGSTOP)  # alive, socket open, but answers nothing, not even pings
    try:
        started = time.monotonic()
        [reply] = receive_all(coordinator.fleet, 1, timeout=10)
        noticed_after = time.monotonic() - started
    finally:
        os.kill(frozen.pid, signal.SIGCONT)

    assert reply.error is not None and reply.error.startswith("node a disconnected before replying")
    assert noticed_after < 3.0
    assert coordinator.fleet.available() == []


def test_node_holding_the_gil_past_the_heartbeat_timeout_is_kept_and_replies(
    start_coordinator: StartCoordinator, spawn_node: SpawnNode, params: ParamSet
) -> None:
    coordinator = start_coordinator()
    spawn_node(coordinator, "a", hog=2.0)  # more than three times the 0.6 s heartbeat timeout
    wait_until(lambda: coordinator.fleet.available() == ["a"], timeout=20)

    coordinator.fleet.send("a", Task(kind="fit", round=1, params=params))
    [reply] = receive_all(coordinator.fleet, 1, timeout=15)

    assert reply.ok, reply.error
    assert coordinator.statuses == [("a", True)]


def test_node_process_with_a_bad_token_exits_with_a_clear_message(
    start_coordinator: StartCoordinator, spawn_node: SpawnNode, tmp_path: Path
) -> None:
    coordinator = start_coordinator()

    process = spawn_node(coordinator, "a", token="expired")
    code = process.wait(timeout=20)

    output = (tmp_path / "a.log").read_text()
    assert code == 2
    assert "the coordinator refused node a: unknown or revoked token; ask the operator for a new token" in output
    assert "Traceback" not in output


def test_fedavg_over_three_node_processes_matches_the_in_process_fleet(
    start_coordinator: StartCoordinator, spawn_node: SpawnNode, params: ParamSet
) -> None:
    coordinator = start_coordinator()
    for name in NODES:
        spawn_node(coordinator, name)
    config = EngineConfig(
        rounds=3, seed=3, min_available_nodes=3, wait_for_nodes_timeout=30, round_timeout=30, evaluate_fraction=1.0
    )

    networked = Engine(coordinator.fleet, fedavg(), config)
    result = networked.run(networked.initial_state(params))
    reference_fleet = InProcessFleet(list(NODES), lambda n: build_app(n, offset=NODES[n][0], examples=NODES[n][1]))
    reference = Engine(reference_fleet, fedavg(), config)
    expected = reference.run(reference.initial_state(params))

    assert result.params.bitwise_equal(expected.params)
    assert [r.federated_metrics for r in result.history] == [r.federated_metrics for r in expected.history]
    assert all(r.replies == 3 and not r.failures for r in result.history)
    mean_offset = sum(o * n for o, n in NODES.values()) / sum(n for _, n in NODES.values())
    np.testing.assert_allclose(result.params["b"], 3 * mean_offset, rtol=1e-6)
