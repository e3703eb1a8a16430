"""The coordinator service over a real store and an in-process fleet."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest

from fedlearn.client.node_app import NodeApp
from fedlearn.runtime.coordinator import Coordinator
from fedlearn.runtime.store import open_store
from fedlearn.simulation.inprocess import InProcessFleet
from tests.runtime import tracked_learner
from tests.runtime.deploy.slow_learner import SlowTrainer

LEARNER = "tests.runtime.tracked_learner:make"
CONFIG = f"""
[run]
name = "tracked"
rounds = 3
seed = 0
[model]
learner = "{LEARNER}"
n_features = 4
n_classes = 3
[strategy]
name = "fedavg"
[engine]
min_available_nodes = 1
min_reply_fraction = 1.0
"""


def test_run_lets_go_of_its_initial_parameters_once_the_engine_moves_on(tmp_path: Path) -> None:
    fleet = InProcessFleet(["n1"], lambda name: NodeApp(node_id=name, trainer=tracked_learner.TrackingTrainer()))
    tracked_learner.ALIVE_DURING_FIT.clear()
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        coordinator = Coordinator(store, fleet, poll_interval=0.05, allowed_learners=[LEARNER])
        coordinator.start()
        run_id = coordinator.submit(CONFIG).id
        deadline = time.monotonic() + 60
        while store.get_run(run_id).status not in ("completed", "failed") and time.monotonic() < deadline:
            time.sleep(0.05)
        coordinator.close()
        status = store.get_run(run_id)

    assert (status.status, status.message) == ("completed", "3 rounds")
    assert tracked_learner.ALIVE_DURING_FIT == [True, False, False]


def test_run_that_cannot_get_its_nodes_fails_recording_a_quorum_error(tmp_path: Path) -> None:
    fleet = InProcessFleet(["n1"], lambda name: NodeApp(node_id=name, trainer=tracked_learner.TrackingTrainer()))
    config = CONFIG.replace("min_available_nodes = 1", "min_available_nodes = 2\nwait_for_nodes_timeout = 0.2")
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        coordinator = Coordinator(store, fleet, poll_interval=0.05, allowed_learners=[LEARNER])
        coordinator.start()
        run_id = coordinator.submit(config).id
        deadline = time.monotonic() + 60
        while store.get_run(run_id).status not in ("completed", "failed") and time.monotonic() < deadline:
            time.sleep(0.05)
        coordinator.close()
        run = store.get_run(run_id)

    assert (run.status, run.error) == ("failed", "QuorumError")
    assert "needed 2 nodes but only 1 were available" in run.message


def _finish(store, run_id: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 60
    while store.get_run(run_id).status not in ("completed", "failed", "stopped") and time.monotonic() < deadline:
        time.sleep(0.05)


def test_each_runs_life_is_logged_one_line_per_event(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fedlearn.runtime.coordinator")
    fleet = InProcessFleet(["n1"], lambda name: NodeApp(node_id=name, trainer=tracked_learner.TrackingTrainer()))
    failing = CONFIG.replace("min_available_nodes = 1", "min_available_nodes = 2\nwait_for_nodes_timeout = 0.2")
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        coordinator = Coordinator(store, fleet, poll_interval=0.05, allowed_learners=[LEARNER])
        coordinator.start()
        good = coordinator.submit(CONFIG).id
        _finish(store, good)
        bad = coordinator.submit(failing).id
        _finish(store, bad)
        with coordinator.fleet_access(wait=1.0, purpose="an analytics request"):
            pass
        coordinator.close()

    lines = [r.getMessage() for r in caplog.records]
    assert f"run {good} (tracked): submitted, 3 rounds" in lines
    assert f"run {good}: started" in lines
    assert f"run {good}: round 3 done, 1 of 1 replies" in lines
    assert f"run {good}: completed after 3 rounds" in lines
    assert any(line.startswith(f"run {bad}: failed: needed 2 nodes but only 1") for line in lines)
    assert [line for line in lines if line.startswith("an analytics request:") and "waiting" not in line] == [
        "an analytics request: has the nodes",
        "an analytics request: done",
    ]


def test_a_resumed_run_says_from_which_round(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fedlearn.runtime.coordinator")
    fleet = InProcessFleet(["n1"], lambda name: NodeApp(node_id=name, trainer=tracked_learner.TrackingTrainer()))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with open_store(url) as store:
        first = Coordinator(store, fleet, poll_interval=0.05, allowed_learners=[LEARNER])
        run_id = first.submit(CONFIG.replace("rounds = 3", "rounds = 1")).id
        first.start()
        _finish(store, run_id)
        first.close()
        store.set_run_status(run_id, "running", "")  # as if a coordinator had died after its checkpoint
        second = Coordinator(store, fleet, poll_interval=0.05, allowed_learners=[LEARNER])
        second.start()
        deadline = time.monotonic() + 30
        while not any("resumed" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.05)
        second.close()

    assert f"run {run_id}: resumed after round 1 from its checkpoint" in [r.getMessage() for r in caplog.records]


class _Inflating(tracked_learner.TrackingTrainer):
    """Claims a million examples for each fit: a node trying to outweigh the others."""

    def fit(self, params, config, state, extras=None):  # type: ignore[no-untyped-def]
        result = super().fit(params, config, state, extras)
        return replace(result, num_examples=10**6)


def test_a_reply_claiming_more_rows_than_its_node_declared_is_rejected_with_the_reason(tmp_path: Path) -> None:
    fleet = InProcessFleet(["n1", "n2"], lambda name: NodeApp(
        node_id=name, trainer=_Inflating() if name == "n1" else tracked_learner.TrackingTrainer()))  # fmt: skip
    tracked_learner.ALIVE_DURING_FIT.clear()
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.add_node("n1", max_examples=50)
        coordinator = Coordinator(store, fleet, poll_interval=0.05, allowed_learners=[LEARNER])
        coordinator.start()
        run_id = coordinator.submit(CONFIG.replace("min_reply_fraction = 1.0", "min_reply_fraction = 0.5")).id
        _finish(store, run_id)
        coordinator.close()
        run, history = store.get_run(run_id), store.round_history(run_id)

    assert run.status == "completed", run.message
    assert all(record.replies == 1 for record in history)
    assert all("claims 1000000 examples, but the node declared 50 rows" in r.failures["n1"] for r in history)


DP = """
[privacy.differential_privacy]
enabled = true
mechanism = "central"
clip = 1.0
noise_multiplier = 1.0
epsilon = {budget}
delta = 1e-5
"""


def _dp_config(*, rounds: int, budget: float, fraction: float = 1.0, min_nodes: int = 1) -> str:
    strategy = f'[strategy]\nname = "fedavg"\nfraction = {fraction}\nmin_nodes = {min_nodes}'
    return (CONFIG.replace("rounds = 3", f"rounds = {rounds}").replace('[strategy]\nname = "fedavg"', strategy)
            + DP.format(budget=budget))  # fmt: skip


def _tracked_fleet(names: list[str]) -> InProcessFleet:
    return InProcessFleet(names, lambda name: NodeApp(node_id=name, trainer=tracked_learner.TrackingTrainer()))


def _run_to_end(store, fleet, config: str) -> str:  # type: ignore[no-untyped-def]
    coordinator = Coordinator(store, fleet, poll_interval=0.05, allowed_learners=[LEARNER])
    coordinator.start()
    run_id = coordinator.submit(config).id
    _finish(store, run_id)
    coordinator.close()
    return run_id


def test_dp_run_checkpoints_its_ledger_and_logs_epsilon_each_round(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fedlearn.runtime.coordinator")
    tracked_learner.INITIAL.clear()
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        run_id = _run_to_end(store, _tracked_fleet(["n1", "n2"]), _dp_config(rounds=3, budget=50))
        run, (history, ledger) = store.get_run(run_id), store.progress(run_id)

    assert run.status == "completed", run.message
    assert ledger is not None and sum(charge.count for charge in ledger.charges) == 3
    assert history[-1].epsilon == ledger.epsilon()
    assert f"run {run_id}: round 3 done, 2 of 2 replies, ε = {ledger.epsilon():.4g} spent" in caplog.messages


@pytest.mark.slow  # three runs, one of them slowed so that the first coordinator can close mid-run
def test_dp_run_resumed_by_a_new_coordinator_spends_on_from_its_stored_ledger(tmp_path: Path) -> None:
    config = _dp_config(rounds=3, budget=50)
    slow = InProcessFleet(["n1", "n2"], lambda name: NodeApp(
        node_id=name, trainer=SlowTrainer(tracked_learner.TrackingTrainer(), delay=0.1)))  # fmt: skip
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        uninterrupted = store.round_history(_run_to_end(store, _tracked_fleet(["n1", "n2"]), config))
        first = Coordinator(store, slow, poll_interval=0.05, allowed_learners=[LEARNER])
        first.start()
        run_id = first.submit(config).id
        deadline = time.monotonic() + 30
        while store.get_run(run_id).rounds_done < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        first.close()  # leaves the run running after its current round, for the next coordinator
        left = store.get_run(run_id)
        at_restart = store.privacy_ledger(run_id)
        _run_to_end_of(store, _tracked_fleet(["n1", "n2"]), run_id)
        resumed = store.round_history(run_id)

    assert (left.status, left.rounds_done < 3) == ("running", True)
    assert at_restart is not None and sum(c.count for c in at_restart.charges) == left.rounds_done
    assert [r.epsilon for r in resumed] == [r.epsilon for r in uninterrupted]


def _run_to_end_of(store, fleet, run_id: str) -> None:  # type: ignore[no-untyped-def]
    coordinator = Coordinator(store, fleet, poll_interval=0.05, allowed_learners=[LEARNER])
    coordinator.start()
    _finish(store, run_id)
    coordinator.close()


def test_dp_run_whose_plan_exceeds_its_budget_fails_with_the_one_line_reason(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        run_id = _run_to_end(store, _tracked_fleet(["n1", "n2"]), _dp_config(rounds=3, budget=0.5))
        run = store.get_run(run_id)

    assert (run.status, run.error, run.rounds_done) == ("failed", "PrivacyError", 0)
    assert "over the budget `epsilon` = 0.5" in run.message and "\n" not in run.message


class _Dwindling(InProcessFleet):
    """An in-process fleet whose last node leaves for good once the first round's tasks are out."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(names, lambda name: NodeApp(node_id=name, trainer=tracked_learner.TrackingTrainer()))
        self._started = False

    def send(self, node_id, task):  # type: ignore[no-untyped-def]
        self._started = True
        super().send(node_id, task)

    def available(self):  # type: ignore[no-untyped-def]
        nodes = super().available()
        return nodes[:-1] if self._started else nodes


@pytest.mark.slow  # fixed-size sampling's RDP takes a quarter second to compose, and the engine composes often
def test_dp_run_whose_next_round_would_exceed_its_budget_stops_saying_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Planned with 2 of 4 nodes a round; with one node gone the second round would sample 2 of 3,
    # which costs more, so a budget that just fits the plan runs out before it.
    caplog.set_level(logging.INFO, logger="fedlearn.runtime.coordinator")
    config = _dp_config(rounds=2, budget=1000, fraction=0.5, min_nodes=1)
    with open_store(f"sqlite:///{tmp_path / 'plan.db'}") as planning:
        planned = planning.privacy_ledger(_run_to_end(planning, _tracked_fleet(["n1", "n2", "n3", "n4"]), config))
    assert planned is not None
    budget = planned.epsilon() * (1 + 1e-9)
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        tight = config.replace("epsilon = 1000", f"epsilon = {budget!r}")
        run_id = _run_to_end(store, _Dwindling(["n1", "n2", "n3", "n4"]), tight)
        run, ledger = store.get_run(run_id), store.privacy_ledger(run_id)

    assert (run.status, run.error, run.rounds_done) == ("stopped", None, 1)
    assert run.message.startswith("privacy budget exhausted: round 2 would take ε from ")
    assert ledger is not None and ledger.epsilon() <= budget
    assert f"run {run_id}: stopped: {run.message}" in caplog.messages
