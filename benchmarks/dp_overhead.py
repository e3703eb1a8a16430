"""What central DP's clipping and noise add to a round at 100 nodes x 1,001,000 parameters.

Why: issue 12 asks that clipping every update and noising the aggregate cost under 10% of a round
at 100 nodes x 1M parameters. The modes run the same simulation and differ only in the strategy:
``plain`` is FedAvg over every node (unweighted mean, as DP needs), ``dp`` the same with central DP
(``DifferentialPrivacy(noise_multiplier=1, epsilon=inf, clip=1, mechanism="central")``: report ε,
no budget), so the coordinator clips 100 updates of 1M float32 and adds 1M Gaussian draws a round.

Two workloads, as in ``secagg_simulation.py``: ``softmax`` (the simulation benchmark's case (a):
1000 features x 1000 classes, 5 local SGD steps of 32 samples per node) is a real round, the one
the 10% target is about; ``shift`` (``runtime_learner``: nodes add a constant, no compute) leaves
only the engine's own work, so it shows DP's cost against the smallest possible round.

Each run is a fresh interpreter, modes take turns within each repeat, round 1 is warm-up, and a
run's figure is the median of its later rounds; the table gives medians over repeats, and every
ratio is dp against plain in the same repeat. CPU is the process's CPU time per round.

    .venv/bin/python -m benchmarks.dp_overhead --repeats 5
    .venv/bin/python -m benchmarks.dp_overhead --repeats 5 --workload shift
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MODES = ("plain", "dp")
STEPS, BATCH, LR, SEED = 5, 32, 0.1, 0
ROOT = Path(__file__).resolve().parents[1]


def strategy_for(mode: str) -> Any:
    """FedAvg over every node; with central DP in mode ``dp``. The one place that knows the DP API."""
    from dataclasses import fields, replace

    from fedlearn.strategies import Strategy, fedavg

    plain = fedavg(weighting="equal")
    if mode == "plain":
        return plain
    if "differential_privacy" not in {f.name for f in fields(Strategy)}:
        raise SystemExit("this fedlearn has no DP engine yet (Strategy has no `differential_privacy`); merge main")
    from fedlearn.privacy.differential import DifferentialPrivacy

    dp = DifferentialPrivacy(noise_multiplier=1.0, epsilon=float("inf"), clip=1.0, mechanism="central")
    return replace(plain, differential_privacy=dp)


def child(mode: str, nodes: int, features: int, classes: int, rounds: int, workload: str) -> None:
    """One simulation in this interpreter; prints its per-round wall and CPU medians as one JSON line."""
    import numpy as np

    from fedlearn.client.numpy_trainer import softmax_regression
    from fedlearn.data.dataset import Dataset
    from fedlearn.engine import EngineConfig, RoundRecord
    from fedlearn.simulation.run import simulate

    rng = np.random.default_rng(SEED)
    rows = STEPS * BATCH
    partitions = [
        Dataset(x=rng.standard_normal((rows, features), dtype=np.float32), y=rng.integers(0, classes, rows),
                n_classes=classes)
        for _ in range(nodes)
    ]  # fmt: skip
    ends: list[float] = []
    cpu_ends: list[float] = []
    epsilons: list[float | None] = []

    def on_round(record: RoundRecord) -> None:
        ends.append(time.perf_counter())
        cpu_ends.append(time.process_time())
        epsilons.append(record.epsilon)

    learner: Any = softmax_regression(features, classes, learning_rate=LR)
    if workload == "shift":
        from benchmarks.runtime_learner import make

        learner = make(None, size=features * classes + classes)
    simulate(
        learner,
        partitions,
        strategy_for(mode),
        EngineConfig(rounds=rounds, seed=SEED, client_config={"local_steps": STEPS, "batch_size": BATCH}),
        on_round=on_round,
        tune_allocator=True,
    )
    print(json.dumps({
        "round_s": statistics.median(b - a for a, b in itertools.pairwise(ends)),
        "cpu_s": statistics.median(b - a for a, b in itertools.pairwise(cpu_ends)),
        "epsilon": epsilons[-1],
    }))  # fmt: skip


def measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.dp_overhead", "--child", mode, "--nodes", str(args.nodes),
               "--features", str(args.features), "--classes", str(args.classes), "--rounds", str(args.rounds),
               "--workload", args.workload]  # fmt: skip
    out = subprocess.run(command, check=False, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-3000:])
        raise SystemExit(f"{mode} run failed with exit code {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--features", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4, help="round 1 is warm-up")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workload", choices=("softmax", "shift"), default="softmax")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.nodes, args.features, args.classes, args.rounds, args.workload)
        return
    if args.rounds < 2:
        parser.error("--rounds must be at least 2: round 1 is warm-up")
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for repeat in range(args.repeats):
        for mode in MODES:
            runs[mode].append(measure(mode, args))
        plain, dp = runs["plain"][-1], runs["dp"][-1]
        print(f"  repeat {repeat + 1}: plain {plain['round_s']:.3f} s, dp {dp['round_s']:.3f} s "
              f"({dp['round_s'] / plain['round_s']:.3f}x; CPU {dp['cpu_s'] / plain['cpu_s']:.3f}x), "
              f"ε after {args.rounds} rounds {dp['epsilon']}", flush=True)  # fmt: skip
    params = args.features * args.classes + args.classes
    print(f"{args.nodes} nodes x {params:,} parameters, {args.workload} workload, rounds after the first, "
          f"median of {args.repeats} runs")  # fmt: skip
    print("| mode | round | ratio | CPU per round | CPU ratio |")
    print("|---|---|---|---|---|")
    for mode in MODES:
        rs = runs[mode]
        ratio = statistics.median(r["round_s"] / p["round_s"] for r, p in zip(rs, runs["plain"], strict=True))
        cpu = statistics.median(r["cpu_s"] / p["cpu_s"] for r, p in zip(rs, runs["plain"], strict=True))
        print(f"| {mode} | {statistics.median(r['round_s'] for r in rs):.3f} s | {ratio:.3f}x "
              f"| {statistics.median(r['cpu_s'] for r in rs):.3f} s | {cpu:.3f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
