"""``fedlearn run`` against a real coordinator process: it follows the run and exits as the run ended."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedlearn.core.errors import QuorumError
from tests.runtime.deploy.conftest import ADMIN, ROOT, Deployment, node_toml, run_toml

pytestmark = pytest.mark.slow


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    deployed = Deployment(tmp=tmp_path, store_url=f"sqlite:///{tmp_path / 'coordinator.db'}")
    yield deployed
    deployed.close()


def _run(deployment: Deployment, config: str) -> subprocess.CompletedProcess[str]:
    path = deployment.tmp / "run.toml"
    path.write_text(config)
    return subprocess.run(
        [sys.executable, "-c", "from fedlearn.cli import main; main()", "run", str(path),
         "--coordinator", deployment.api],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "FEDLEARN_ADMIN_TOKEN": ADMIN},
    )  # fmt: skip


def _run_id(done: subprocess.CompletedProcess[str]) -> str:
    submitted = re.search(r"^submitted run ([0-9a-f]{32}) \(deploy-test\)$", done.stdout, re.MULTILINE)
    assert submitted is not None, done.stdout
    return submitted.group(1)


def test_run_that_cannot_get_its_nodes_exits_with_the_quorum_code_and_the_runs_message(
    deployment: Deployment,
) -> None:
    deployment.start_coordinator()  # and no node at all
    config = run_toml(rounds=2).replace("wait_for_nodes_timeout = 30", "wait_for_nodes_timeout = 0.5")

    done = _run(deployment, config)

    assert done.returncode == QuorumError.exit_code == 4
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert errors == [
        f"error: run {_run_id(done)} failed: needed 3 nodes but only 0 were available after waiting 0.5 s "
        "(raise wait_for_nodes_timeout or start more nodes)"
    ]
    assert "Traceback" not in done.stderr


def test_run_that_completes_exits_0_saying_so(deployment: Deployment) -> None:
    deployment.register("node-000")
    deployment.start_coordinator()
    deployment.start_node("node-000", node_toml(0, 1))
    deployment.wait_for_nodes(1)

    done = _run(deployment, run_toml(rounds=2, nodes=1))

    assert done.returncode == 0, done.stderr
    assert f"run {_run_id(done)}: completed 2 rounds" in done.stdout
    assert "2/2" in done.stderr  # the progress bar's last state


def _fedlearn(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from fedlearn.cli import main; main()", *args, "--coordinator", deployment.api],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "FEDLEARN_ADMIN_TOKEN": ADMIN, "COLUMNS": "120"},
    )  # fmt: skip


def test_runs_show_and_list_keep_a_run_to_its_lines(deployment: Deployment) -> None:
    deployment.register("node-000")
    deployment.start_coordinator()
    deployment.start_node("node-000", node_toml(0, 1))
    deployment.wait_for_nodes(1)
    completed = _run_id(_run(deployment, run_toml(rounds=2, nodes=1)))
    quick_failure = run_toml(rounds=2).replace("wait_for_nodes_timeout = 30", "wait_for_nodes_timeout = 0.2")
    failed = _run_id(_run(deployment, quick_failure))

    shown = _fedlearn(deployment, "runs", "show", completed)
    listed = _fedlearn(deployment, "runs", "list")

    assert shown.stdout.splitlines()[0] == f"run {completed} (deploy-test): completed, 2/2 rounds"
    assert _fedlearn(deployment, "runs", "show", failed).stdout.startswith(
        f"run {failed} (deploy-test): failed, 0/2 rounds: needed 3 nodes"
    )
    message_lines = [line for line in listed.stdout.splitlines() if "needed 3" in line or "wait_for_nodes" in line]
    assert len(message_lines) == 1 and failed in message_lines[0]  # the long message does not wrap


def test_the_follower_rides_out_a_coordinator_restart(deployment: Deployment) -> None:
    deployment.register("node-000")
    deployment.start_coordinator()
    deployment.start_node("node-000", node_toml(0, 1, learner="tests.runtime.deploy.slow_learner:make",
                                                options="{ delay = 0.3 }"))  # fmt: skip
    deployment.wait_for_nodes(1)
    path = deployment.tmp / "run.toml"
    path.write_text(run_toml(rounds=6, nodes=1))
    follower = subprocess.Popen(
        [sys.executable, "-c", "from fedlearn.cli import main; main()", "run", str(path),
         "--coordinator", deployment.api],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "FEDLEARN_ADMIN_TOKEN": ADMIN},
    )  # fmt: skip
    deployment.wait_until(lambda: any(r.rounds_done >= 2 for r in deployment.client().runs()), "round 2", timeout=60)

    deployment.kill(deployment.coordinator)
    deployment.start_coordinator()  # same store and ports: the run resumes, the follower asks again
    out, err = follower.communicate(timeout=120)

    assert follower.returncode == 0, err
    assert "completed 6 rounds" in out


def test_a_failed_run_resumes_from_its_checkpoint(deployment: Deployment) -> None:
    deployment.register("node-000", "node-001")
    deployment.start_coordinator()
    deployment.start_node("node-000", node_toml(0, 2))
    deployment.wait_for_nodes(1)
    config = run_toml(rounds=3, nodes=2).replace("wait_for_nodes_timeout = 30", "wait_for_nodes_timeout = 0.5")
    failed = _run_id(_run(deployment, config))

    deployment.start_node("node-001", node_toml(1, 2))
    deployment.wait_for_nodes(2)
    resumed = _fedlearn(deployment, "runs", "resume", failed)

    assert resumed.returncode == 0, resumed.stderr
    assert f"run {failed}: completed 3 rounds" in resumed.stdout
    again = _fedlearn(deployment, "runs", "resume", failed)
    assert again.returncode == 2 and "only a failed run can be resumed" in again.stderr
