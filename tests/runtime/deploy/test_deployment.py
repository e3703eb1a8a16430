"""A coordinator and node processes on loopback: parity with simulation, crashes, refusals."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import httpx
import pytest

from fedlearn.config import parse_config
from fedlearn.core.codec import decode
from fedlearn.simulation import plan_simulation, simulate
from tests.runtime.deploy.conftest import ADMIN, ROOT, SIMULATION_DATA, Deployment, node_toml, run_toml
from tests.runtime.deploy.hostile_node import MODES

pytestmark = pytest.mark.slow
NODES = ["node-000", "node-001", "node-002"]
SLOW = "tests.runtime.deploy.slow_learner:make"


def _simulated(config: str):
    plan = plan_simulation(parse_config(tomllib.loads(config + SIMULATION_DATA)))
    return simulate(plan.learner, plan.partitions, plan.strategy, plan.engine).params


def _model(deployment: Deployment, run_id: str):
    with deployment.client() as client:
        return decode(client.model(run_id))


def _start(deployment: Deployment, *, learner: str = "numpy.softmax", options: str = "{}") -> None:
    deployment.register(*NODES)
    deployment.start_coordinator()
    for i, name in enumerate(NODES):
        deployment.start_node(name, node_toml(i, 3, learner=learner, options=options))
    deployment.wait_for_nodes(3)


def test_deployed_run_matches_simulation_bit_for_bit(deployment: Deployment) -> None:
    _start(deployment)

    run = deployment.wait_for_run(deployment.submit(run_toml(rounds=4)))

    assert run.status == "completed", run.message
    assert _model(deployment, run.id).bitwise_equal(_simulated(run_toml(rounds=4)))


def test_deployed_nodes_evaluate_on_held_out_rows_exactly_as_simulated_nodes_do(deployment: Deployment) -> None:
    deployment.register(*NODES)
    deployment.start_coordinator()
    for i, name in enumerate(NODES):
        deployment.start_node(name, node_toml(i, 3, extra="holdout_fraction = 0.25\nholdout_seed = 7"))
    deployment.wait_for_nodes(3)
    config = run_toml(rounds=2, extra="evaluate_fraction = 1.0")

    run = deployment.wait_for_run(deployment.submit(config))
    plan = plan_simulation(parse_config(tomllib.loads(config + SIMULATION_DATA + "holdout_fraction = 0.25\n")))
    simulated = simulate(
        plan.learner, plan.partitions, plan.strategy, plan.engine, evaluation_data=plan.evaluation_data
    )

    assert run.status == "completed", run.message
    assert _model(deployment, run.id).bitwise_equal(simulated.params)
    deployed_metrics = [dict(record.federated_metrics) for record in run.history]
    assert deployed_metrics == [dict(record.federated_metrics) for record in simulated.history]
    assert all(metrics["heldout"] == 1.0 for metrics in deployed_metrics)


def test_node_killed_mid_round_is_left_out_and_goes_offline(deployment: Deployment) -> None:
    _start(deployment, learner=SLOW, options="{ delay = 1.0 }")
    run_id = deployment.submit(run_toml(rounds=3, nodes=2))  # rounds after the kill need only two
    deployment.wait_for_run(run_id, rounds=1)

    deployment.kill(deployment.nodes["node-001"])  # it is now inside a 1 s fit of round 2
    run = deployment.wait_for_run(run_id)

    assert run.status == "completed", run.message
    second = run.history[1]
    assert second.replies == 2 and "node-001" in second.failures
    deployment.wait_until(lambda: "node-001" not in deployment.online(), "node-001 to go offline", timeout=15)


def test_too_few_nodes_fails_the_run_with_counts_instead_of_hanging(deployment: Deployment) -> None:
    deployment.register("node-000")
    deployment.start_coordinator()
    deployment.start_node("node-000", node_toml(0, 3))
    deployment.wait_for_nodes(1)

    run = deployment.wait_for_run(deployment.submit(run_toml(extra="wait_for_nodes_timeout = 2").replace(
        "wait_for_nodes_timeout = 30\n", "")))  # fmt: skip

    assert run.status == "failed"
    assert "needed 3 nodes but only 1 were available" in run.message


def test_coordinator_killed_mid_run_resumes_to_the_same_model(deployment: Deployment) -> None:
    _start(deployment, learner=SLOW, options="{ delay = 0.3 }")
    config = run_toml(rounds=6)
    run_id = deployment.submit(config)
    deployment.wait_for_run(run_id, rounds=2)

    deployment.kill(deployment.coordinator)
    deployment.start_coordinator()  # same store, same ports: the nodes reconnect by themselves
    run = deployment.wait_for_run(run_id)

    assert run.status == "completed", run.message
    assert len(run.history) == 6
    assert _model(deployment, run_id).bitwise_equal(_simulated(config))


def test_unknown_token_is_refused_and_the_node_exits_with_a_clear_message(deployment: Deployment) -> None:
    deployment.register("node-000")
    deployment.start_coordinator()

    intruder = deployment.start_node("node-000", node_toml(0, 3), token="not-the-token")
    code = intruder.wait(timeout=30)

    assert code != 0
    assert "refused" in deployment.log("node-000") and "Traceback" not in deployment.log("node-000")


def test_revoked_node_is_refused(deployment: Deployment) -> None:
    from fedlearn.runtime.store import open_store

    deployment.register("node-000")
    with open_store(deployment.store_url) as store:
        store.revoke_node("node-000")
    deployment.start_coordinator()

    assert deployment.start_node("node-000", node_toml(0, 3)).wait(timeout=30) != 0


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-wrong-token"}])
def test_http_api_refuses_requests_without_the_admin_token(deployment: Deployment, headers: dict[str, str]) -> None:
    deployment.start_coordinator()

    response = httpx.get(f"{deployment.api}/api/runs", headers=headers)

    assert response.status_code == 401
    assert httpx.get(f"{deployment.api}/api/health").status_code == 200


def test_bad_run_config_is_refused_naming_the_key(deployment: Deployment) -> None:
    deployment.start_coordinator()

    response = httpx.post(
        f"{deployment.api}/api/runs",
        json={"config": run_toml().replace("[strategy]", "[strategy]\nfraction = 7")},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )

    assert response.status_code == 422
    assert "`fraction` must be in (0, 1]; got 7" in response.json()["detail"]


def test_code_entry_point_learner_is_refused_unless_allowed(deployment: Deployment) -> None:
    deployment.start_coordinator()

    response = httpx.post(
        f"{deployment.api}/api/runs",
        json={"config": run_toml().replace('learner = "numpy.softmax"', 'learner = "os:system"')},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )

    assert response.status_code == 422 and "--allow-learner" in response.json()["detail"]


def test_malformed_updates_from_hostile_node_processes_are_rejected_and_change_nothing(
    deployment: Deployment,
) -> None:
    honest = ["node-000", "node-001"]
    hostile = {f"evil-{mode}": mode for mode in MODES}
    deployment.register(*honest, *hostile)
    deployment.start_coordinator()
    for i, name in enumerate(honest):
        deployment.start_node(name, node_toml(i, 2))
    for name, mode in hostile.items():
        deployment.nodes[name] = subprocess.Popen(
            [sys.executable, "-m", "tests.runtime.deploy.hostile_node", "--coordinator",
             f"127.0.0.1:{deployment.grpc_port}", "--name", name, "--mode", mode],
            cwd=ROOT, env={**os.environ, "FEDLEARN_NODE_TOKEN": deployment.tokens[name]},
        )  # fmt: skip
    deployment.wait_for_nodes(2 + len(hostile))
    config = run_toml(rounds=2, nodes=8, extra="min_reply_fraction = 0.2").replace("min_reply_fraction = 0.6\n", "")

    run = deployment.wait_for_run(deployment.submit(config))

    assert run.status == "completed", run.message
    failures = run.history[0].failures
    expected = {"shape": "shape", "dtype": "dtype", "nan": "NaN", "inf": "Inf", "unknown": "unknown",
                "examples": "num_examples"}  # fmt: skip
    for name, mode in hostile.items():
        assert expected[mode] in failures[name], failures[name]
    honest_only = config.replace("min_available_nodes = 8", "min_available_nodes = 2")
    plan = plan_simulation(parse_config(tomllib.loads(honest_only + SIMULATION_DATA.replace("nodes = 3", "nodes = 2"))))
    simulated = simulate(plan.learner, plan.partitions, plan.strategy, plan.engine).params
    assert _model(deployment, run.id).bitwise_equal(simulated)


def test_the_shipped_example_runs_on_after_losing_a_node_for_good(deployment: Deployment) -> None:
    example = ROOT / "examples" / "deploy"
    deployment.register(*NODES)
    deployment.start_coordinator()
    for i, name in enumerate(NODES):
        deployment.start_node(name, (example / f"node-{i}.toml").read_text())
    deployment.wait_for_nodes(3)
    deployment.kill(deployment.nodes["node-002"])
    deployment.wait_until(lambda: "node-002" not in deployment.online(), "node-002 to go offline", timeout=15)

    run = deployment.wait_for_run(deployment.submit((example / "run.toml").read_text().replace("rounds = 10", "rounds = 3")))

    assert run.status == "completed", run.message
    assert [record.replies for record in run.history] == [2, 2, 2]
