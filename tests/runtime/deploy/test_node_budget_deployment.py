"""A node's lifetime privacy budget in real node processes: charged per task, kept across a SIGKILL, enforced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.runtime.deploy.conftest import Deployment, node_toml, run_toml

pytestmark = pytest.mark.slow
NODES = ["node-000", "node-001", "node-002"]
SLOW = "tests.runtime.deploy.slow_learner:make"
PRIVACY = "\n[privacy]\nepsilon_budget = 5.0\n"  # at noise multiplier 2: four rounds cost 4.73, five 5.38
DP_CLIENT = """"dp.mechanism" = "central"
"dp.clip" = 1.0
"dp.noise_multiplier" = 2.0
"dp.delta" = 1e-5
"""


def _dp_run(rounds: int) -> str:
    config = run_toml(rounds=rounds, nodes=3).replace('learner = "numpy.softmax"', f'learner = "{SLOW}"')
    return config.replace("[client]\n", f"[client]\n{DP_CLIENT}")


def _charges(tmp: Path, name: str) -> int:
    ledger = json.loads((tmp / f"{name}.privacy-ledger.json").read_text())["ledger"]
    return sum(charge["count"] for charge in ledger["charges"])


def _start_node(deployment: Deployment, index: int) -> None:
    deployment.start_node(NODES[index], node_toml(index, 3, learner=SLOW, options="{ delay = 0.5 }", extra=PRIVACY))


def test_a_node_budget_survives_sigkill_and_refuses_the_task_that_would_exceed_it(deployment: Deployment) -> None:
    deployment.register(*NODES)
    deployment.start_coordinator("--allow-learner", SLOW)
    for index in range(3):
        _start_node(deployment, index)
    deployment.wait_for_nodes(3)

    first = deployment.submit(_dp_run(rounds=2))
    deployment.wait_for_run(first, rounds=1)
    deployment.kill(deployment.nodes["node-000"])  # in round 2's fit, or between rounds: after a charge either way
    killed_with = _charges(deployment.tmp, "node-000")
    assert deployment.wait_for_run(first).status == "completed"

    _start_node(deployment, 0)  # restarted on its ledger, not on a fresh budget
    deployment.wait_for_nodes(3)
    assert _charges(deployment.tmp, "node-000") == killed_with >= 1
    second = deployment.submit(_dp_run(rounds=3))
    run = deployment.wait_for_run(second)

    assert run.status == "failed", run.message
    assert "lifetime budget" in run.message
    assert [_charges(deployment.tmp, name) for name in NODES[1:]] == [4, 4]  # the refused fifth round spent nothing
    assert killed_with <= _charges(deployment.tmp, "node-000") <= 4
    assert "spent so far" in deployment.log("node-000")
