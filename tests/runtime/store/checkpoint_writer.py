"""Save checkpoints of one run in an endless loop until killed; run by ``test_crash.py``.

Usage: ``python checkpoint_writer.py STORE_URL RUN_ID CHUNK_SIZE``. After each commit it prints the
round number, so the test knows how far it got. Every array in round ``n`` is filled with ``n``, and
the privacy ledger holds ``n`` charges, which lets the test see a checkpoint that mixes two rounds.
"""

from __future__ import annotations

import sys

import numpy as np

from fedlearn.core.params import ParamSet
from fedlearn.engine.engine import RunState
from fedlearn.engine.history import RoundRecord
from fedlearn.privacy.ledger import Charge, PrivacyLedger
from fedlearn.runtime.store import open_store

VALUES = 20_000


def state_for(number: int, history: tuple[RoundRecord, ...]) -> RunState:
    return RunState(
        round=number,
        params=ParamSet({"w": np.full(VALUES, number, np.float32), "b": np.full(7, number, np.int64)}),
        strategy_state=ParamSet({"momentum.w": np.full(VALUES, number, np.float64)}),
        history=history,
        ledger=PrivacyLedger(delta=1e-5, charges=(Charge(noise_multiplier=1.0, count=number),)),
    )


def record_for(number: int) -> RoundRecord:
    return RoundRecord(
        round=number, sampled=2, replies=2, num_examples=number, duration_s=0.0, bytes_sent=0, bytes_received=0
    )


def main(url: str, run_id: str, chunk_size: int) -> None:
    store = open_store(url, chunk_size=chunk_size)
    history: tuple[RoundRecord, ...] = ()
    number = 0
    while True:
        number += 1
        history = (*history, record_for(number))
        store.save_checkpoint(run_id, state_for(number, history))
        print(number, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
