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
    assert [
        line for line in lines if line.startswith("an analytics request:") and "waiting" not in line
    ] == ["an analytics request: has the nodes", "an analytics request: done"]


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
