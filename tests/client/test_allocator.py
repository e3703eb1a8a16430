"""The allocator tuning: freed model-sized buffers are reused instead of faulted back in.

Each measurement runs in a fresh interpreter, because the tuning is per process and permanent.
"""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="the tuning applies to glibc only"
)

PAGES_PER_ROUND = 3 * 4_000_000 // 4096  # three 4 MB arrays, as a fit allocates them

MEASURE = """
import resource
import numpy as np

def faults_per_round():  # page faults of one round of a fit's model-sized allocations, after a warm-up
    def round_of_allocations():
        weights, scratch, grads = (np.ones(1_000_000, np.float32) for _ in range(3))
        del weights, scratch, grads
    for _ in range(3):
        round_of_allocations()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        round_of_allocations()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
"""

SCRIPT = (
    MEASURE
    + """
import sys
from fedlearn.client.allocator import retain_freed_memory

if sys.argv[1] == "tuned":
    assert retain_freed_memory()
elif sys.argv[1] in ("simulation", "untuned-simulation"):  # only a simulation that asks tunes this process
    from fedlearn.client.numpy_trainer import linear_regression
    from fedlearn.data.dataset import Dataset
    from fedlearn.engine import EngineConfig
    from fedlearn.simulation.run import simulate
    from fedlearn.strategies import fedavg
    data = Dataset(x=np.ones((4, 2), np.float32), y=np.ones(4, np.float32), task="regression")
    simulate(linear_regression(2), [data], fedavg(), EngineConfig(rounds=1, seed=0),
             tune_allocator=sys.argv[1] == "simulation")

print(faults_per_round())
"""
)


POOL_SCRIPT = (
    MEASURE
    + """
from fedlearn.core.messages import Reply, Task
from fedlearn.simulation.pool import ProcessPoolFleet

class Allocating:  # a node that measures its own worker's page faults
    def handle(self, task):
        metrics = {"faults": faults_per_round()}
        return Reply(node_id="node-0", kind=task.kind, round=task.round, metrics=metrics)

fleet = ProcessPoolFleet(["node-0"], lambda node_id: Allocating(), workers=1)
try:
    fleet.send("node-0", Task(kind="probe", round=1))
    replies = []
    while not replies:
        replies = fleet.receive(timeout=30)
    print(replies[0].metrics["faults"])
finally:
    fleet.close()
"""
)


def faults_per_round(mode: str) -> float:
    script = POOL_SCRIPT if mode == "pool" else SCRIPT
    out = subprocess.run([sys.executable, "-c", script, mode], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def test_retain_freed_memory_reuses_model_sized_buffers_without_page_faults() -> None:
    assert faults_per_round("tuned") < 0.01 * PAGES_PER_ROUND


def test_default_allocator_faults_freed_model_buffers_back_in() -> None:
    # Why the tuning exists: if glibc ever stops doing this, the module can go.
    assert faults_per_round("default") > 0.5 * PAGES_PER_ROUND


def test_simulation_applies_the_tuning_when_asked() -> None:
    assert faults_per_round("simulation") < 0.01 * PAGES_PER_ROUND


def test_simulation_leaves_the_calling_process_alone_by_default() -> None:
    assert faults_per_round("untuned-simulation") > 0.5 * PAGES_PER_ROUND


def test_pool_workers_apply_the_tuning_though_their_parent_did_not() -> None:
    assert faults_per_round("pool") < 0.01 * PAGES_PER_ROUND
