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

SCRIPT = """
import resource, sys
import numpy as np
from fedlearn.client.allocator import retain_freed_memory

if sys.argv[1] == "tuned":
    assert retain_freed_memory()
elif sys.argv[1] == "simulation":  # building any simulation fleet must tune the allocator
    from fedlearn.simulation.run import make_fleet
    make_fleet(["node-0"], lambda node_id: None, executor="inprocess", workers=1).close()

def round_of_allocations():
    weights, scratch, grads = (np.ones(1_000_000, np.float32) for _ in range(3))
    del weights, scratch, grads

for _ in range(3):
    round_of_allocations()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    round_of_allocations()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def faults_per_round(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def test_retain_freed_memory_reuses_model_sized_buffers_without_page_faults() -> None:
    assert faults_per_round("tuned") < 0.01 * PAGES_PER_ROUND


def test_default_allocator_faults_freed_model_buffers_back_in() -> None:
    # Why the tuning exists: if glibc ever stops doing this, the module can go.
    assert faults_per_round("default") > 0.5 * PAGES_PER_ROUND


def test_simulation_fleets_apply_the_tuning() -> None:
    assert faults_per_round("simulation") < 0.01 * PAGES_PER_ROUND
