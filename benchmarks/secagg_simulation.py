"""Secure aggregation against plain FedAvg in simulation: round time, bytes and peak memory.

The workload is the simulation benchmark's: softmax regression with 5 local SGD steps of 32
samples per node, FedAvg over every node. Each mode runs in a fresh interpreter, so peak RSS is
its own, and the modes take turns within each repeat. Round 1 is warm-up and not counted. Next
to wall time, the process's CPU time per round: the simulation runs on one thread, so on a quiet
machine the two agree, and on a shared one CPU time is the steadier measure.

    .venv/bin/python benchmarks/secagg_simulation.py --nodes 100 --features 1000 --classes 1000
    .venv/bin/python benchmarks/secagg_simulation.py --nodes 20 --features 1000 --classes 1000 --repeats 3

``--workload shift`` replaces training with adding a constant to the model (``runtime_learner``),
the workload of ``flower_secagg.py``, so that the two frameworks' rounds compare like for like.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MODES = ("plain", "secure")
STEPS, BATCH, LR, SEED = 5, 32, 0.1, 0


def random_partitions(nodes: int, features: int, classes: int) -> list[Any]:
    """``nodes`` datasets of STEPS x BATCH random rows each, from SEED: the 100 x 1M workload's data."""
    import numpy as np

    from fedlearn.data.dataset import Dataset

    rng = np.random.default_rng(SEED)
    rows = STEPS * BATCH
    return [
        Dataset(x=rng.standard_normal((rows, features), dtype=np.float32), y=rng.integers(0, classes, rows),
                n_classes=classes)
        for _ in range(nodes)
    ]  # fmt: skip


def child(mode: str, nodes: int, features: int, classes: int, rounds: int, workload: str) -> None:
    from dataclasses import replace

    from fedlearn.client.numpy_trainer import softmax_regression
    from fedlearn.engine import EngineConfig, RoundRecord
    from fedlearn.privacy.protocol import SecureAggregation
    from fedlearn.simulation.run import simulate
    from fedlearn.strategies import fedavg

    partitions = random_partitions(nodes, features, classes)
    strategy = fedavg()
    if mode == "secure":
        strategy = replace(strategy, secure_aggregation=SecureAggregation(clip=1.0, max_weight=STEPS * BATCH))
    ends: list[float] = []
    cpu_ends: list[float] = []
    records: list[RoundRecord] = []

    def on_round(record: RoundRecord) -> None:
        ends.append(time.time())
        cpu_ends.append(time.process_time())
        records.append(record)

    learner = softmax_regression(features, classes, learning_rate=LR)
    if workload == "shift":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from benchmarks.runtime_learner import make

        learner = make(None, size=features * classes + classes)
    simulate(
        learner,
        partitions,
        strategy,
        EngineConfig(rounds=rounds, seed=SEED, client_config={"local_steps": STEPS, "batch_size": BATCH}),
        on_round=on_round,
        tune_allocator=True,
    )
    later = records[1:]
    print(json.dumps({
        "round_s": statistics.median(b - a for a, b in itertools.pairwise(ends)),
        "cpu_s": statistics.median(b - a for a, b in itertools.pairwise(cpu_ends)),
        "bytes_sent": statistics.median(r.bytes_sent for r in later),
        "bytes_received": statistics.median(r.bytes_received for r in later),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))  # fmt: skip


def measure(mode: str, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", mode, "--nodes", str(args.nodes), "--features",
               str(args.features), "--classes", str(args.classes), "--rounds", str(args.rounds),
               "--workload", args.workload]  # fmt: skip
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--features", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workload", choices=("softmax", "shift"), default="softmax")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.nodes, args.features, args.classes, args.rounds, args.workload)
        return
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for _ in range(args.repeats):
        for mode in MODES:
            runs[mode].append(measure(mode, args))
    med = {mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for mode, rs in runs.items()}
    params = args.features * args.classes + args.classes
    print(f"{args.nodes} nodes x {params:,} parameters, {args.workload} workload, median of {args.repeats}")
    print("| mode | round | ratio | CPU per round | CPU ratio | bytes sent | bytes received | ratio of bytes "
          "| peak RSS |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for mode in MODES:
        m, p = med[mode], med["plain"]
        total, plain_total = m["bytes_sent"] + m["bytes_received"], p["bytes_sent"] + p["bytes_received"]
        sent, received = m["bytes_sent"] / 1e6, m["bytes_received"] / 1e6
        print(f"| {mode} | {m['round_s']:.2f} s | {m['round_s'] / p['round_s']:.2f}x | {m['cpu_s']:.2f} s "
              f"| {m['cpu_s'] / p['cpu_s']:.2f}x | {sent:.0f} MB | {received:.0f} MB | {total / plain_total:.2f}x "
              f"| {m['rss_mb']:.0f} MB |")  # fmt: skip
    ratios = sorted(s["round_s"] / p["round_s"] for s, p in zip(runs["secure"], runs["plain"], strict=True))
    print(f"secure/plain round time within each repeat: {', '.join(f'{r:.2f}x' for r in ratios)}")


if __name__ == "__main__":
    main()
