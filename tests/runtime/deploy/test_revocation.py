"""`fedlearn nodes revoke`, run by the operator as its own process, cuts a node off a running coordinator."""

from __future__ import annotations

import time

import pytest

from tests.runtime.deploy.conftest import Deployment, fedlearn_process, node_toml, run_toml

pytestmark = pytest.mark.slow
NODES = ["node-000", "node-001", "node-002"]
SLOW = "tests.runtime.deploy.slow_learner:make"


def test_revoked_node_loses_its_session_within_a_second_and_the_run_goes_on_without_it(
    deployment: Deployment,
) -> None:
    deployment.register(*NODES)
    deployment.start_coordinator()
    for i, name in enumerate(NODES):
        slow = name == "node-002"  # its first fit lasts long enough for the operator to act
        deployment.start_node(name, node_toml(i, 3, learner=SLOW if slow else "numpy.softmax",
                                              options="{ delay = 4.0 }" if slow else "{}"))  # fmt: skip
    deployment.wait_for_nodes(3)
    run_id = deployment.submit(run_toml(rounds=2, nodes=2))
    deployment.wait_for_run(run_id, statuses=("running",))
    time.sleep(0.5)  # round 1's tasks are out: node-002 is inside its fit

    operator = fedlearn_process(["nodes", "revoke", "node-002", "--store", deployment.store_url], deployment.tmp / "op")
    assert operator.wait(timeout=30) == 0
    revoked_at = time.monotonic()
    deployment.wait_until(lambda: "node node-002 is offline" in deployment.log("coordinator"),
                          "the coordinator to end node-002's session", timeout=5)  # fmt: skip
    noticed_after = time.monotonic() - revoked_at
    exit_code = deployment.nodes["node-002"].wait(timeout=10)
    run = deployment.wait_for_run(run_id)

    assert noticed_after < 1.0
    assert "node node-002 is offline: its token was revoked or rotated" in deployment.log("coordinator")
    assert exit_code != 0 and "revoked token" in deployment.log("node-002")
    assert run.status == "completed", run.message
    first, second = run.history
    assert first.replies == 2 and "its token was revoked" in first.failures["node-002"]
    assert second.sampled == 2 and second.replies == 2
    assert "Traceback" not in deployment.log("coordinator")
    assert "Traceback" not in deployment.log("node-002")
