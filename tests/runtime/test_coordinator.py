"""The coordinator service over a real store and an in-process fleet."""

from __future__ import annotations

import time
from pathlib import Path

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
