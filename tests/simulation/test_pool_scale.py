"""The process pool at 10,000 nodes, and a pool whose parent is killed: nothing hangs, nothing is left."""

from __future__ import annotations

import ast
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


def _shm_entries() -> set[str]:
    return {name for name in os.listdir("/dev/shm") if name.startswith("psm_")}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_parent_leaves_no_worker_and_no_shared_memory(sig: signal.Signals) -> None:
    before = _shm_entries()
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().startswith("round")  # workers are running and blocks are published
        children = psutil.Process(parent.pid).children(recursive=True)
        during = _shm_entries() - before
        assert children and during

        parent.send_signal(sig)
        parent.wait(timeout=10)
        _, alive = psutil.wait_procs(children, timeout=30)
        deadline = time.monotonic() + 30  # Python's resource tracker unlinks them; it may be slow on a busy machine
        while _shm_entries() & during and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        parent.kill()
        parent.wait()

    assert not alive, f"{len(alive)} worker process(es) outlived their parent"
    assert not _shm_entries() & during, "shared-memory blocks outlived the pool"


DIES_WHILE_PUBLISHING = """
import os, signal
import numpy as np
from fedlearn.core.params import ParamSet
from fedlearn.simulation import shared

def die(fd, size):  # the block's file exists now, and nothing of the parent will run again
    print(sorted(n for n in os.listdir("/dev/shm") if n.startswith("psm_")), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

shared.publish(ParamSet({"w": np.zeros(10, np.float32)}))  # starts the resource tracker
shared.os.ftruncate = die
shared.publish(ParamSet({"w": np.zeros(10, np.float32)}))
"""


@pytest.mark.timeout(60)
def test_a_parent_killed_while_it_creates_a_block_leaks_nothing() -> None:
    """The kill lands after the block's file exists and before anything else: the tracker still unlinks it."""
    before = _shm_entries()
    done = subprocess.run(
        [sys.executable, "-c", DIES_WHILE_PUBLISHING], check=False, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    during = set(ast.literal_eval(done.stdout.strip())) - before
    assert during, "the block was not created before the kill"
    deadline = time.monotonic() + 20
    while _shm_entries() & during and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _shm_entries() & during, "a block created just before the parent died outlived it"
