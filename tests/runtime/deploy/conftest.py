"""Real deployments on loopback: a coordinator process, node processes, a real store.

Processes are started through the real CLI entry point and stopped with SIGKILL when a test
ends, whatever state it left them in.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fedlearn.runtime.store import open_store
from fedlearn.web.client import CoordinatorClient
from fedlearn.web.contract import RunDetail

ROOT = Path(__file__).resolve().parents[3]
ADMIN = "test-admin-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fedlearn_process(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "from fedlearn.cli import main; main()", *args],
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )


def node_toml(index: int, nodes: int, *, learner: str = "numpy.softmax", options: str = "{}", extra: str = "") -> str:
    return f"""
[node]
learner = "{learner}"
learner_options = {options}
{extra}

[datasets.digits]
source = "builtin"
name = "digits"
nodes = {nodes}
index = {index}
seed = 7
test_fraction = 0.25
partition = "dirichlet"
partition_options = {{ alpha = 0.5 }}
"""


def run_toml(*, rounds: int = 4, nodes: int = 3, extra: str = "") -> str:
    return f"""
[run]
name = "deploy-test"
rounds = {rounds}
seed = 7

[model]
learner = "numpy.softmax"
n_features = 64
n_classes = 10

[client]
local_epochs = 1
batch_size = 32
learning_rate = 0.1

[strategy]
name = "fedadam"
server_learning_rate = 0.05

[engine]
min_available_nodes = {nodes}
wait_for_nodes_timeout = 30
round_timeout = 30
min_reply_fraction = 0.6
{extra}
"""


SIMULATION_DATA = """
[data]
dataset = "digits"
nodes = 3
test_fraction = 0.25
partition = "dirichlet"
partition_options = { alpha = 0.5 }
"""


@dataclass
class Deployment:
    """One coordinator and its nodes, all real processes on loopback."""

    tmp: Path
    store_url: str
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    coordinator_args: list[str] = field(default_factory=list)
    node_args: list[str] = field(default_factory=list)
    coordinator: subprocess.Popen[bytes] | None = None
    nodes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def register(self, *names: str) -> None:
        with open_store(self.store_url) as store:
            for name in names:
                self.tokens[name] = store.add_node(name)

    def start_coordinator(self, *extra: str) -> None:
        self.coordinator = fedlearn_process(
            ["coordinator", "--listen", f"127.0.0.1:{self.grpc_port}", "--http", f"127.0.0.1:{self.http_port}",
             "--store", self.store_url, "--heartbeat-timeout", "3", *self.coordinator_args, *extra],
            self.tmp / "coordinator.log",
            env={"FEDLEARN_ADMIN_TOKEN": ADMIN},
        )  # fmt: skip
        self.wait_until(self._healthy, "the coordinator's API to answer", timeout=30)

    def start_node(self, name: str, config: str, *extra: str, token: str | None = None) -> subprocess.Popen[bytes]:
        path = self.tmp / f"{name}.toml"
        path.write_text(config)
        process = fedlearn_process(
            ["node", "--coordinator", f"127.0.0.1:{self.grpc_port}", "--name", name, "--config", str(path),
             *self.node_args, *extra],
            self.tmp / f"{name}.log",
            env={"FEDLEARN_NODE_TOKEN": token if token is not None else self.tokens[name]},
        )  # fmt: skip
        self.nodes[name] = process
        return process

    def client(self) -> CoordinatorClient:
        return CoordinatorClient(self.api, admin_token=ADMIN)

    def online(self) -> set[str]:
        with self.client() as client:
            return {n.name for n in client.nodes() if n.status == "online"}

    def run(self, run_id: str) -> RunDetail:
        with self.client() as client:
            return client.run(run_id)

    def submit(self, config: str) -> str:
        with self.client() as client:
            return str(client.submit(config).id)

    def wait_for_nodes(self, count: int, timeout: float = 30) -> None:
        self.wait_until(lambda: len(self.online()) >= count, f"{count} nodes online", timeout=timeout)

    def wait_for_run(self, run_id: str, *, statuses: tuple[str, ...] = ("completed", "failed", "stopped"),
                     rounds: int | None = None, timeout: float = 120) -> RunDetail:  # fmt: skip
        def done() -> bool:
            run = self.run(run_id)
            return run.status in statuses if rounds is None else run.rounds_done >= rounds

        self.wait_until(done, f"run {run_id} to progress", timeout=timeout)
        return self.run(run_id)

    def kill(self, process: subprocess.Popen[bytes] | None) -> None:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_until(self, condition: Any, what: str, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except Exception:  # not up yet
                pass
            if self.coordinator is not None and self.coordinator.poll() is not None:
                pytest.fail(f"the coordinator exited while waiting for {what}:\n{self.log('coordinator')[-3000:]}")
            time.sleep(0.2)
        pytest.fail(f"timed out after {timeout} s waiting for {what}:\n{self.log('coordinator')[-3000:]}")

    def _healthy(self) -> bool:
        import httpx

        return httpx.get(f"{self.api}/api/health", timeout=1).status_code == 200

    def close(self) -> None:
        for process in [*self.nodes.values(), self.coordinator]:
            self.kill(process)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    deployed = Deployment(tmp=tmp_path, store_url=f"sqlite:///{tmp_path / 'coordinator.db'}")
    yield deployed
    deployed.close()
