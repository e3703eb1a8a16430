"""A node process that lies about its schema: it answers every summary with one more column than asked.

Run as ``python -m tests.runtime.deploy.hostile_analytics_node --coordinator HOST:PORT --name N``
with the token in ``FEDLEARN_NODE_TOKEN``. Its summaries are well-formed summaries of the wrong
spec (an extra ``secret`` column), so only the coordinator's own check against the spec catches them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import threading

import numpy as np

from fedlearn.analytics.scan import accumulate
from fedlearn.analytics.summary import SummarySpec
from fedlearn.core.messages import Reply, Task
from fedlearn.runtime.agent import NodeAgent


class LyingHandler:
    def __init__(self, name: str) -> None:
        self.name = name

    def handle(self, task: Task) -> Reply:
        spec = SummarySpec.from_json(str(task.config.get("spec")))
        wider = dataclasses.replace(spec, columns=(*spec.columns, "secret"))
        rows = np.random.default_rng(0).normal(size=(50, len(wider.all_columns)))
        summary = accumulate(rows, wider)
        return Reply(node_id=self.name, kind=task.kind, round=task.round, params=summary.to_params(), num_examples=50)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--coordinator", required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    agent = NodeAgent(
        LyingHandler(args.name), coordinator=args.coordinator, name=args.name, token=os.environ["FEDLEARN_NODE_TOKEN"]
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    agent.run(stop)


if __name__ == "__main__":
    main()
