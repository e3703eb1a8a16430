"""A coordinator killed with SIGKILL mid-checkpoint must find the last complete checkpoint on restart."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fedlearn.runtime.store import open_store

WRITER = Path(__file__).with_name("checkpoint_writer.py")
CHUNK = 4096  # each checkpoint writes about 60 chunk rows, so a kill lands mid-transaction
ROUNDS_BEFORE_KILL = 4


def _run_writer_then_kill(url: str, run_id: str, delay: float) -> int:
    """Start the writer, wait until it has committed a few rounds, SIGKILL it; return the last round it reported."""
    proc = subprocess.Popen([sys.executable, str(WRITER), url, run_id, str(CHUNK)], stdout=subprocess.PIPE, text=True)
    try:
        reported = 0
        deadline = time.monotonic() + 30
        while reported < ROUNDS_BEFORE_KILL:
            line = proc.stdout.readline()
            assert line, f"checkpoint writer exited early with code {proc.poll()}"
            assert time.monotonic() < deadline, "checkpoint writer is too slow"
            reported = int(line)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        reported = max([reported, *(int(line) for line in proc.stdout.read().split())])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return reported


@pytest.mark.parametrize("delay", [0.0, 0.013])
def test_sigkill_during_checkpoint_loop_leaves_the_last_checkpoint_whole(store_url, delay):
    with open_store(store_url) as store:
        run_id = store.create_run("crash", "", seed=0, rounds=10**6)

    reported = _run_writer_then_kill(store_url, run_id, delay)

    with open_store(store_url) as store:
        state = store.load_checkpoint(run_id)  # verifies both blob digests
        run = store.get_run(run_id)
    assert state is not None
    assert state.round >= reported  # nothing reported as committed was lost
    assert run.rounds_done == state.round
    assert [record.round for record in state.history] == list(range(1, state.round + 1))
    assert all(np.all(array == state.round) for array in state.params.values())
    assert np.all(state.strategy_state["momentum.w"] == state.round)
    assert state.ledger is not None and state.ledger.charges[0].count == state.round
