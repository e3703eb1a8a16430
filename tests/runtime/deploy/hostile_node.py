"""A node process that sends malformed updates, bypassing every check a real NodeApp makes.

Run as ``python -m tests.runtime.deploy.hostile_node --coordinator HOST:PORT --name N --mode M``
with the token in ``FEDLEARN_NODE_TOKEN``. Each mode breaks one thing the coordinator must
catch on its own: shape, dtype, NaN, Inf, an unknown parameter name or an absurd example count.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading

import numpy as np

from fedlearn.core.messages import FIT, Reply, Task
from fedlearn.core.params import ParamSet
from fedlearn.runtime.agent import NodeAgent

MODES = {
    "shape": lambda p: ParamSet({k: np.zeros((*v.shape, 2), v.dtype) for k, v in p.items()}),
    "dtype": lambda p: p.astype(np.float64),
    "nan": lambda p: p.map(lambda a: np.full_like(a, np.nan)),
    "inf": lambda p: p.map(lambda a: np.full_like(a, np.inf)),
    "unknown": lambda p: p.merged(ParamSet({"backdoor": np.ones(3, np.float32)})),
    "examples": lambda p: p.map(lambda a: a + 1000),
}


class HostileHandler:
    def __init__(self, name: str, mode: str) -> None:
        self.name = name
        self.mode = mode

    def handle(self, task: Task) -> Reply:
        if task.kind != FIT:
            return Reply(node_id=self.name, kind=task.kind, round=task.round, num_examples=1, metrics={"loss": 0.0})
        count = 10**15 if self.mode == "examples" else 100
        params = MODES[self.mode](task.params)
        return Reply(node_id=self.name, kind=task.kind, round=task.round, params=params, num_examples=count)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--coordinator", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--mode", choices=sorted(MODES), required=True)
    args = parser.parse_args()
    agent = NodeAgent(
        HostileHandler(args.name, args.mode),
        coordinator=args.coordinator,
        name=args.name,
        token=os.environ["FEDLEARN_NODE_TOKEN"],
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    agent.run(stop)


if __name__ == "__main__":
    main()
