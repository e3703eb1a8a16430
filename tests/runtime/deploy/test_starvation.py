"""A registered node that tries to starve the coordinator: honest runs still complete, memory stays bounded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.runtime.deploy.conftest import ROOT, Deployment, node_toml, run_toml

pytestmark = pytest.mark.slow
HONEST = ["node-000", "node-001", "node-002"]
MiB = 1 << 20


def _start(deployment: Deployment, hostile: str, *attack: str) -> Path:
    """Three honest nodes and one hostile one, all connected; returns the hostile one's log."""
    deployment.register(*HONEST, hostile)
    deployment.start_coordinator()
    for i, name in enumerate(HONEST):
        deployment.start_node(name, node_toml(i, 3))
    log = deployment.tmp / f"{hostile}.log"
    deployment.nodes[hostile] = subprocess.Popen(
        [sys.executable, "-m", "tests.runtime.deploy.hostile_streams", "--coordinator",
         f"127.0.0.1:{deployment.grpc_port}", "--name", hostile, *attack],
        cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        env={**__import__("os").environ, "FEDLEARN_NODE_TOKEN": deployment.tokens[hostile]},
    )  # fmt: skip
    return log


def _peak_rss(pid: int) -> int:
    """The process's high-water mark of resident memory, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_honest_run_completes_while_a_node_holds_a_thousand_silent_streams(deployment: Deployment) -> None:
    log = _start(deployment, "mallory", "--silent", "1000")
    deployment.wait_for_nodes(3)
    deployment.wait_until(lambda: "RESOURCE_EXHAUSTED" in log.read_text(), "the attack to be under way", timeout=30)
    config = run_toml(rounds=1, nodes=3).replace("round_timeout = 30", "round_timeout = 15")

    run = deployment.wait_for_run(deployment.submit(config), timeout=60)

    assert run.status == "completed", run.message
    assert [r.replies for r in run.history] == [3]
    assert deployment.coordinator is not None
    assert psutil.Process(deployment.coordinator.pid).memory_info().rss < 400 * MiB
    assert "Traceback" not in deployment.log("coordinator")


def test_duplicate_uploads_of_one_task_buffer_one_reply(deployment: Deployment) -> None:
    size = 64 * MiB
    log = _start(deployment, "mallory", "--duplicates", "8", "--size", str(size))
    deployment.wait_for_nodes(4)
    assert deployment.coordinator is not None
    before = _peak_rss(deployment.coordinator.pid)
    config = run_toml(rounds=1, nodes=4, extra="min_reply_fraction = 0.7").replace("min_reply_fraction = 0.6\n", "")

    run = deployment.wait_for_run(deployment.submit(config), timeout=90)
    grown = _peak_rss(deployment.coordinator.pid) - before

    assert run.status == "completed", run.message
    assert [r.replies for r in run.history] == [3]
    assert grown < 2.5 * size, f"the coordinator grew by {grown / MiB:.0f} MiB for one {size / MiB:.0f} MiB reply"
    attempts = [line for line in log.read_text().splitlines() if line.startswith("duplicates")]
    assert len(attempts) == 1 and all(line.count("unreadable reply") == 1 for line in attempts), attempts  # read once
    assert "Traceback" not in deployment.log("coordinator")
