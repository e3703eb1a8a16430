"""The process pool at 10,000 nodes, and a pool whose parent is killed: nothing hangs, nothing is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from fedlearn.core.messages import FIT, Reply, Task
from fedlearn.core.params import ParamSet
from fedlearn.engine.stage import Gather
from fedlearn.simulation.pool import ProcessPoolFleet
from fedlearn.simulation.shared import SHM_DIR, SHM_PREFIX


class ShiftNode:
    """Answers with the parameters plus one: cheap, so the pipes, not the work, are what is tested."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id

    def handle(self, task: Task) -> Reply:
        params = task.params.map(lambda a: a + np.float32(1))
        return Reply(node_id=self.node_id, kind=task.kind, round=task.round, params=params, num_examples=1)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_pool_answers_a_round_of_10000_nodes() -> None:
    ids = [f"node-{i:05d}" for i in range(10_000)]
    model = ParamSet({"w": np.zeros(100, np.float32)})
    tasks = {node: Task(kind=FIT, round=1, params=model) for node in ids}

    with ProcessPoolFleet(ids, ShiftNode, workers=2) as fleet:
        replies = list(Gather(fleet, tasks, quorum=len(ids), timeout=180))

    assert [r.node_id for r in replies] == ids
    assert all(float(r.params["w"][0]) == 1.0 for r in replies)


PARENT = """
import sys
from fedlearn.client.learners import builtin_learner
from fedlearn.data.datasets import load_dataset
from fedlearn.data.partition import partition
from fedlearn.engine import EngineConfig
from fedlearn.simulation import simulate
from fedlearn.strategies import build_strategy

data = load_dataset("digits")
parts = [data.subset(ix) for ix in partition("iid", data, 8, seed=0)]
simulate(builtin_learner("numpy.softmax", data), parts, build_strategy("fedavg"),
         EngineConfig(rounds=10**6, seed=0, client_config={"local_epochs": 3}), executor="pool", workers=2,
         on_round=lambda record: print("round", record.round, flush=True))
"""


def _blocks_of(pid: int) -> set[str]:
    """The blocks of the pool whose parent is ``pid``, whatever other processes have in /dev/shm."""
    return {name for name in os.listdir(SHM_DIR) if name.startswith(f"{SHM_PREFIX}{pid}_")}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_parent_leaves_no_worker_and_no_shared_memory(sig: signal.Signals) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().startswith("round")  # workers are running and blocks are published
        children = psutil.Process(parent.pid).children(recursive=True)
        during = _blocks_of(parent.pid)
        assert children and during

        parent.send_signal(sig)
        parent.wait(timeout=10)
        _, alive = psutil.wait_procs(children, timeout=30)
        deadline = time.monotonic() + 30  # Python's resource tracker unlinks them; it may be slow on a busy machine
        while _blocks_of(parent.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        parent.kill()
        parent.wait()

    assert not alive, f"{len(alive)} worker process(es) outlived their parent"
    assert not _blocks_of(parent.pid), "shared-memory blocks outlived the pool"


DIES_WHILE_PUBLISHING = """
import os, signal
import numpy as np
from fedlearn.core.params import ParamSet
from fedlearn.simulation import shared

def die(fd, size):  # the block's file exists now, and nothing of this process will run again
    print(sum(name.startswith(f"fedlearn_{os.getpid()}_") for name in os.listdir("/dev/shm")), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

shared.publish(ParamSet({"w": np.zeros(10, np.float32)}))  # starts the resource tracker
shared.os.ftruncate = die
shared.publish(ParamSet({"w": np.zeros(10, np.float32)}))
"""


@pytest.mark.timeout(60)
def test_a_parent_killed_while_it_creates_a_block_leaks_nothing() -> None:
    """The kill lands after the block's file exists and before anything else: the tracker still unlinks it."""
    child = subprocess.Popen([sys.executable, "-c", DIES_WHILE_PUBLISHING], stdout=subprocess.PIPE, text=True)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL and out.strip() == "2"  # both blocks existed when it died
    deadline = time.monotonic() + 20
    while _blocks_of(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _blocks_of(child.pid), "a block created just before the parent died outlived it"
