"""A real node process for the transport tests: a NodeApp whose trainer adds a fixed offset.

Run as ``python -m tests.runtime.transport.node_main --coordinator HOST:PORT --name a --token T``.
SIGTERM stops it cleanly; a refusal prints one line to stderr and exits with the error's code.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

import numpy as np

from fedlearn.client.node_app import NodeApp
from fedlearn.client.trainer import EvalResult, FitResult, NodeState
from fedlearn.core.errors import FedlearnError
from fedlearn.core.messages import Config
from fedlearn.core.params import ParamSet
from fedlearn.runtime.agent import NodeAgent
from fedlearn.runtime.transport.backoff import Backoff


class OffsetTrainer:
    """'Training' adds ``offset``; the loss is the mean parameter value. Deterministic to the bit.

    ``delay`` sleeps before answering; ``hog`` spins that long holding the GIL, as a C extension
    or a big decode would, so no other Python thread of the node (its heartbeats) can run.
    """

    def __init__(self, offset: float, examples: int, delay: float = 0.0, hog: float = 0.0) -> None:
        self.offset = offset
        self.examples = examples
        self.delay = delay
        self.hog = hog

    def fit(self, params: ParamSet, config: Config, state: NodeState, extras: ParamSet | None = None) -> FitResult:
        time.sleep(self.delay)
        if self.hog:
            _hold_the_gil(self.hog)
        moved = params.map(lambda a: a + np.asarray(self.offset, dtype=a.dtype))
        return FitResult(params=moved, num_examples=self.examples, metrics={"offset": self.offset})

    def evaluate(self, params: ParamSet, config: Config) -> EvalResult:
        loss = float(np.mean([float(np.mean(a)) for a in params.values()]))
        return EvalResult(loss=loss, num_examples=self.examples)


def _hold_the_gil(seconds: float) -> None:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(seconds + 1)  # the running thread keeps the GIL until it blocks
    try:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
    finally:
        sys.setswitchinterval(interval)


def build_app(name: str, *, offset: float, examples: int, delay: float = 0.0, hog: float = 0.0) -> NodeApp:
    return NodeApp(node_id=name, trainer=OffsetTrainer(offset, examples, delay, hog))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--coordinator", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--offset", type=float, default=1.0)
    parser.add_argument("--examples", type=int, default=10)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--hog", type=float, default=0.0)
    args = parser.parse_args()
    app = build_app(args.name, offset=args.offset, examples=args.examples, delay=args.delay, hog=args.hog)
    agent = NodeAgent(
        app, coordinator=args.coordinator, name=args.name, token=args.token, backoff=Backoff(initial=0.05, maximum=0.2)
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        agent.run(stop)
    except FedlearnError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
