"""Simulation overhead against a plain NumPy loop doing the same arithmetic.

Simulated nodes compute with one BLAS thread (so results do not depend on the executor or the
machine), so the plain loop is measured twice: as written (BLAS picks its thread count) and with
one BLAS thread, which isolates the framework's own overhead. The modes take turns within each
repeat, so drift in the machine's speed (it is shared) falls on all of them alike.

Softmax regression, 5 local SGD steps of 32 samples per node, FedAvg over every node, for
(a) 100 nodes x ~1M float32 parameters, (b) 10 nodes x 100 parameters and (c) 10,000 nodes x
100 parameters, where per-task costs and pipe traffic, not arithmetic, dominate. Each measurement runs
in a fresh interpreter, so its peak RSS and its time from process start to the first round are
its own. Run from the repository root:

    .venv/bin/python benchmarks/simulation_overhead.py            # every case, 5 repeats
    .venv/bin/python benchmarks/simulation_overhead.py --case b --repeats 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

CASES = {
    # name: (nodes, n_features, n_classes, rounds)
    "a": (100, 1000, 1000, 5),
    "b": (10, 9, 10, 300),
    "c": (10_000, 9, 10, 4),
}
MODES = ("plain", "plain-1thread", "inprocess", "pool")
STEPS, BATCH, LR, SEED = 5, 32, 0.1, 0


def _node_data(nodes: int, n_features: int, n_classes: int) -> list[tuple[Any, Any]]:
    import numpy as np

    rng = np.random.default_rng(SEED)
    rows = STEPS * BATCH
    return [
        (rng.standard_normal((rows, n_features), dtype=np.float32), rng.integers(0, n_classes, rows))
        for _ in range(nodes)
    ]


def run_plain(case: str) -> tuple[float, list[float]]:
    """The baseline: the same gradient function and FedAvg arithmetic, with no framework around it."""
    import numpy as np

    from fedlearn.client.numpy_trainer import softmax_loss_and_grad, softmax_regression

    nodes, n_features, n_classes, rounds = CASES[case]
    data = _node_data(nodes, n_features, n_classes)
    global_params = softmax_regression(n_features, n_classes).init_params(SEED).to_dict(writable=True)
    ends = []
    first_start = time.time()
    lr = np.float32(LR)
    for _ in range(rounds):
        acc = {k: np.zeros(v.shape, np.float64) for k, v in global_params.items()}
        total = 0
        for x, y in data:
            w = {k: v.copy() for k, v in global_params.items()}
            scratch = {k: np.empty_like(v) for k, v in w.items()}
            for step in range(STEPS):
                idx = slice(step * BATCH, (step + 1) * BATCH)
                _, grads = softmax_loss_and_grad(w, x[idx], y[idx])
                for k, g in grads.items():  # in place, as a careful hand-written loop would be
                    np.multiply(g, lr, out=scratch[k])
                    w[k] -= scratch[k]
            for k, value in w.items():
                np.multiply(value, len(x), out=scratch[k])
                acc[k] += scratch[k]
            total += len(x)
        global_params = {k: (acc[k] / total).astype(np.float32) for k in acc}
        ends.append(time.time())
    return first_start, ends


def run_fedlearn(case: str, executor: str) -> tuple[float, list[float]]:
    from fedlearn.client.numpy_trainer import softmax_regression
    from fedlearn.data.dataset import Dataset
    from fedlearn.engine import EngineConfig, RoundRecord
    from fedlearn.simulation.run import simulate
    from fedlearn.strategies import fedavg

    nodes, n_features, n_classes, rounds = CASES[case]
    partitions = [Dataset(x=x, y=y, n_classes=n_classes) for x, y in _node_data(nodes, n_features, n_classes)]
    ends: list[float] = []
    starts: list[float] = []

    def on_round(record: RoundRecord) -> None:
        ends.append(time.time())
        starts.append(ends[-1] - record.duration_s)

    simulate(
        softmax_regression(n_features, n_classes, learning_rate=LR),
        partitions,
        fedavg(),
        EngineConfig(
            rounds=rounds,
            seed=SEED,
            client_config={"local_steps": STEPS, "batch_size": BATCH, "learning_rate": LR},
        ),
        executor=executor,  # type: ignore[arg-type]
        workers=2,
        on_round=on_round,
        tune_allocator=True,
    )
    return starts[0], ends


class PeakPss:
    """The largest proportional set size of this process and its children together, sampled.

    Peak RSS counts pages the pool's processes share (forked memory, shared-memory blocks) once
    in every process; PSS splits each shared page between its users, so the sum is what the
    whole simulation really holds.
    """

    def __init__(self, interval: float = 0.25) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            pids = [self._process.pid, *(p.pid for p in self._process.children(recursive=True))]
            self.peak_mb = max(self.peak_mb, sum(_pss_kb(pid) for pid in pids) / 1e3)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def _pss_kb(pid: int) -> int:
    """The process's PSS from the kernel's one-line rollup (cheap, unlike a full smaps read)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            return next(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
    except (OSError, StopIteration):  # a worker that just exited
        return 0


def child(case: str, mode: str, spawned_at: float) -> None:
    pss = PeakPss()
    if mode == "plain-1thread":  # the same loop with the one BLAS thread simulated nodes compute with
        import numpy  # noqa: F401 - BLAS must be loaded before it can be limited
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):
            first_round_start, ends = run_plain(case)
    else:
        first_round_start, ends = run_plain(case) if mode == "plain" else run_fedlearn(case, mode)
    rounds = [b - a for a, b in itertools.pairwise(ends)]  # round 1 is warm-up and not counted
    print(
        json.dumps(
            {
                "round_s": statistics.median(rounds),
                "startup_s": first_round_start - spawned_at,
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "child_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                "pss_mb": pss.stop(),
            }
        )
    )


def measure(case: str, mode: str) -> dict[str, float]:
    spawned = time.time()
    out = subprocess.run(
        [sys.executable, __file__, "--child", case, mode, repr(spawned)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], float(args.child[2]))
        return
    cases = list(CASES) if args.case == "all" else [args.case]
    print(
        "| case | mode | round (median) | ratio to plain | ratio to plain-1thread | peak RSS | worker peak RSS "
        "| peak PSS, all processes | start to first round |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for case in cases:
        runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        for _ in range(args.repeats):
            for mode in MODES:
                runs[mode].append(measure(case, mode))
        med = {mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for mode, rs in runs.items()}
        for mode in MODES:
            m = med[mode]
            worker = f"{m['child_rss_mb']:.0f} MB" if mode == "pool" else "-"
            print(
                f"| {case} | {mode} | {m['round_s'] * 1000:.2f} ms | {m['round_s'] / med['plain']['round_s']:.2f}x "
                f"| {m['round_s'] / med['plain-1thread']['round_s']:.2f}x "
                f"| {m['rss_mb']:.0f} MB | {worker} | {m['pss_mb']:.0f} MB | {m['startup_s']:.2f} s |"
            )


if __name__ == "__main__":
    main()
