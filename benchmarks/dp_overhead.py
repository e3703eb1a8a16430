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
ratio is dp against plain in the same repeat, with its range over repeats (on a shared machine the
range says how far to trust the median). CPU is the process's CPU time per round (the in-process
fleet and its BLAS run on one thread). Each run also times, inside its rounds, the fold's
arithmetic and DP's pieces (:data:`PIECES`), so a ratio that misses its target says where the time
went; ``--micro`` times the same pieces alone, and the noise from both sources.

    .venv/bin/python -m benchmarks.dp_overhead --repeats 5
    .venv/bin/python -m benchmarks.dp_overhead --repeats 5 --workload shift
    .venv/bin/python -m benchmarks.dp_overhead --micro --repeats 21
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

from benchmarks.secagg_simulation import BATCH, LR, SEED, STEPS, random_partitions

MODES = ("plain", "dp")

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


PIECES = {
    "RunningSum.add": ("fedlearn.strategies.accumulators", "RunningSum", "add"),
    "update_norm": ("fedlearn.strategies.privacy", None, "update_norm"),
    "add_gaussian": ("fedlearn.strategies.privacy", None, "add_gaussian"),
    "PrivacyBudget.epsilon": ("fedlearn.engine.privacy_budget", "PrivacyBudget", "epsilon"),
}
"""What the child times inside the run (module, class or None, attribute): the fold's arithmetic and DP's
pieces. (Not the fold as a whole: an in-process fleet trains each node as the fold asks for its reply.)"""


def timed_pieces() -> dict[str, float]:
    """Wrap each of :data:`PIECES` with a wall-clock timer; the returned totals grow as the run calls them."""
    import functools
    import importlib

    totals = dict.fromkeys(PIECES, 0.0)
    for label, (module_name, owner_name, attribute) in PIECES.items():
        module = importlib.import_module(module_name)
        owner = getattr(module, owner_name) if owner_name else module
        original = getattr(owner, attribute)

        @functools.wraps(original)
        def wrapper(*args: Any, _original: Any = original, _label: str = label, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                totals[_label] += time.perf_counter() - start

        setattr(owner, attribute, wrapper)
    return totals


def child(mode: str, nodes: int, features: int, classes: int, rounds: int, workload: str) -> None:
    """One simulation in this interpreter; prints its per-round wall and CPU medians as one JSON line."""

    from fedlearn.client.numpy_trainer import softmax_regression
    from fedlearn.engine import EngineConfig, RoundRecord
    from fedlearn.simulation.run import simulate

    partitions = random_partitions(nodes, features, classes)
    ends: list[float] = []
    cpu_ends: list[float] = []
    epsilons: list[float | None] = []
    totals = timed_pieces()
    after_first: dict[str, float] = {}

    def on_round(record: RoundRecord) -> None:
        ends.append(time.perf_counter())
        cpu_ends.append(time.process_time())
        epsilons.append(record.epsilon)
        if not after_first:
            after_first.update(totals)

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
        "pieces_ms": {k: (totals[k] - after_first[k]) * 1e3 / (rounds - 1) for k in totals},
    }))  # fmt: skip


def micro(nodes: int, features: int, classes: int, repeats: int) -> None:
    """Where DP's time goes in one round, piece by piece: ms per update for the fold, ms per round for the noise.

    The pieces are the ones ``strategies.privacy.private_mean`` runs (and, for the baseline, the
    plain mean's ``RunningSum.add`` at weight 1), on updates of ``features x classes + classes``
    float32 values; the noise is drawn from both sources, seeded (simulation) and AES-CTR (deployment).
    """
    import numpy as np

    from fedlearn.core.params import ParamSet
    from fedlearn.privacy.noise import NoiseSource, SeededNoise, SystemNoise, add_gaussian
    from fedlearn.strategies.accumulators import RunningSum, update_norm

    rng = np.random.default_rng(SEED)
    base = ParamSet({"weight": rng.standard_normal((features, classes), dtype=np.float32),
                     "bias": np.zeros(classes, dtype=np.float32)})  # fmt: skip
    model = ParamSet({name: array + np.float32(0.01) for name, array in base.items()})
    flats = {name: array.reshape(-1) for name, array in base.items()}

    def timed(fn: Any) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e3

    total = RunningSum(base)

    def noise(source: NoiseSource) -> None:
        for sums in total.sums.values():
            add_gaussian(sums, 1.0, source)

    pieces = {
        "plain: RunningSum.add(update, 1.0)": timed(lambda: total.add(model, 1.0)),
        "dp: update_norm(update)": timed(lambda: update_norm(model, flats)),
        "dp: RunningSum.add(update, scale)": timed(lambda: total.add(model, 0.5)),
        "dp: add_gaussian(sum), SeededNoise": timed(lambda: noise(SeededNoise(np.random.default_rng(SEED)))),
        "dp: add_gaussian(sum), SystemNoise": timed(lambda: noise(SystemNoise())),
    }
    params = features * classes + classes
    print(f"{params:,} parameters, median of {repeats}; a round of {nodes} nodes folds {nodes} updates")
    print("| piece | ms | per | ms per round |")
    print("|---|---|---|---|")
    for name, ms in pieces.items():
        per_update = "gaussian" not in name
        print(f"| {name} | {ms:.2f} | {'update' if per_update else 'round'} | {ms * nodes if per_update else ms:.1f} |")


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
    parser.add_argument("--rounds", type=int, default=11, help="round 1 is warm-up")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workload", choices=("softmax", "shift"), default="softmax")
    parser.add_argument("--micro", action="store_true", help="time DP's pieces one by one instead")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.nodes, args.features, args.classes, args.rounds, args.workload)
        return
    if args.micro:
        micro(args.nodes, args.features, args.classes, max(args.repeats, 5))
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
    print("| mode | round | ratio (range) | CPU per round | CPU ratio (range) |")
    print("|---|---|---|---|---|")
    for mode in MODES:
        rs = runs[mode]
        ratios = [r["round_s"] / p["round_s"] for r, p in zip(rs, runs["plain"], strict=True)]
        cpus = [r["cpu_s"] / p["cpu_s"] for r, p in zip(rs, runs["plain"], strict=True)]
        print(f"| {mode} | {statistics.median(r['round_s'] for r in rs):.3f} s "
              f"| {statistics.median(ratios):.3f}x ({min(ratios):.3f}-{max(ratios):.3f}) "
              f"| {statistics.median(r['cpu_s'] for r in rs):.3f} s "
              f"| {statistics.median(cpus):.3f}x ({min(cpus):.3f}-{max(cpus):.3f}) |")  # fmt: skip
    print(f"\nInside the round (ms per round, median of {args.repeats} runs; per update = / {args.nodes})")
    print("| piece | " + " | ".join(MODES) + " |")
    print("|---|" + "---|" * len(MODES))
    for piece in PIECES:
        cells = [statistics.median(r["pieces_ms"][piece] for r in runs[mode]) for mode in MODES]
        print(f"| {piece} | " + " | ".join(f"{ms:.1f}" for ms in cells) + " |")


if __name__ == "__main__":
    main()
