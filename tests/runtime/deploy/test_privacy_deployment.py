"""Differential privacy on a deployed coordinator: the ledger survives a SIGKILL, and the budget stops runs.

Real processes on loopback, as in ``test_deployment``: a coordinator with a SQLite store and node
processes. Deployed noise comes from the OS, so models differ from a simulation's; ε does not,
since it depends only on what ran (how many rounds, under which sampling), never on the noise.
"""

from __future__ import annotations

import threading
import tomllib

import pytest

from fedlearn.config import parse_config
from fedlearn.runtime.store import open_store
from fedlearn.simulation import plan_simulation, simulate
from tests.runtime.deploy.conftest import SIMULATION_DATA, Deployment, node_toml, run_toml
from tests.runtime.test_coordinator import DP

pytestmark = pytest.mark.slow
NODES = ["node-000", "node-001", "node-002"]
SLOW = "tests.runtime.deploy.slow_learner:make"


def _dp_run(*, rounds: int, budget: float) -> str:
    return run_toml(rounds=rounds) + DP.format(budget=budget)


def _simulated_epsilons(config: str) -> list[float | None]:
    plan = plan_simulation(parse_config(tomllib.loads(config + SIMULATION_DATA)))
    return [record.epsilon for record in simulate(plan.learner, plan.partitions, plan.strategy, plan.engine).history]


def _start(deployment: Deployment, *, delay: float) -> None:
    deployment.register(*NODES)
    deployment.start_coordinator()
    for i, name in enumerate(NODES):
        deployment.start_node(name, node_toml(i, 3, learner=SLOW, options=f"{{ delay = {delay} }}"))
    deployment.wait_for_nodes(3)


class LedgerWatch:
    """Reads the run's ledger from the store, behind the coordinator's back, until stopped: what was ever stored."""

    def __init__(self, store_url: str, run_id: str) -> None:
        self.spent: list[int] = []  # charges in the stored ledger, at each look
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(store_url, run_id), daemon=True)
        self._thread.start()

    def _watch(self, store_url: str, run_id: str) -> None:
        with open_store(store_url) as store:
            while not self._stop.wait(0.05):
                ledger = store.privacy_ledger(run_id)
                if ledger is not None:
                    self.spent.append(sum(charge.count for charge in ledger.charges))

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.spent


def test_coordinator_killed_mid_dp_run_resumes_its_ledger_and_still_charges_the_round_it_lost(
    deployment: Deployment,
) -> None:
    _start(deployment, delay=0.3)
    config = _dp_run(rounds=6, budget=50)
    run_id = deployment.submit(config)
    watch = LedgerWatch(deployment.store_url, run_id)
    deployment.wait_for_run(run_id, rounds=2)

    deployment.kill(deployment.coordinator)
    with open_store(deployment.store_url) as store:
        at_kill, done, reserved = (
            store.privacy_ledger(run_id),
            store.get_run(run_id).rounds_done,
            store.reserved_privacy(run_id),
        )
    deployment.start_coordinator()  # same store: the run resumes from its checkpoint, ledger included
    run = deployment.wait_for_run(run_id)
    spent = watch.stop()

    assert run.status == "completed", run.message
    assert f"run {run_id}: resumed after round" in deployment.log("coordinator")
    assert at_kill is not None and sum(c.count for c in at_kill.charges) == done >= 2
    # The round under way when the coordinator died had been reserved before its tasks left: it may have
    # released (the model went out for evaluation), so it stays charged, and its redo is charged again.
    assert reserved is not None and reserved[0] in (done, done + 1)
    lost = reserved[0] - done
    expected = _simulated_epsilons(_dp_run(rounds=6 + lost, budget=50))
    assert [record.epsilon for record in run.history] == expected[:done] + expected[done + lost :]
    assert run.privacy is not None
    assert (run.privacy.epsilon, run.privacy.delta, run.privacy.budget) == (expected[-1], 1e-5, 50.0)
    assert spent == sorted(spent) and spent[-1] == 6 + lost  # the stored ledger never went backwards


def test_dp_run_whose_plan_exceeds_its_budget_is_failed_with_the_one_line_reason(deployment: Deployment) -> None:
    _start(deployment, delay=0.0)

    run = deployment.wait_for_run(deployment.submit(_dp_run(rounds=4, budget=0.5)), timeout=60)

    assert (run.status, run.error, run.rounds_done) == ("failed", "PrivacyError", 0)
    assert "over the budget `epsilon` = 0.5" in run.message and "\n" not in run.message
    assert run.privacy is not None and (run.privacy.epsilon, run.privacy.charges) == (0.0, [])  # nothing ran
