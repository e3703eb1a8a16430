"""fedlearn's privacy-utility table: accuracy at ε ∈ {1, 3, 8, ∞}, δ = 1e-5, over 1,000 simulated nodes.

Why: issue 12 asks what differential privacy costs in accuracy, on a dataset split over at least
1,000 nodes, side by side with Flower 1.42's DP wrappers on the same workload (``flower_dp.py``),
both sides' ε through the same accountant. The workload, the data split and the accountant are
``dp_workload.py``'s, shared with the Flower script: Synthetic-IID, 1,000 nodes of 50 rows, softmax
regression (fedlearn's ``softmax_regression``, initialised as ``dp_workload.init_params``), one
local epoch of batch-10 SGD at learning rate 1, 100 nodes a round, 100 rounds, clipping norm 1.

The run goes through ``fedlearn.simulate`` with central DP (``mechanism = "central"``): the
coordinator clips each update to norm ``C``, sums, and adds Gaussian noise of std ``z * C``. The
noise multiplier ``z`` is calibrated for the target ε with ``dp_workload.calibrate`` for the
sampling that runs: ``--sampling poisson`` (the default: fedlearn's Poisson sampler, rate 0.1,
accounted under add-or-remove-one) or ``--sampling fixed`` (100 of 1,000 without replacement, as
Flower samples, accounted under replace-one). ε = ∞ is plain FedAvg over 10% of the nodes. Each
record reports ε twice: from the shared accountant and, where the engine records it, from the
run's own history (``RoundRecord.epsilon``), which must agree.

Run from the repository root (``--table`` merges any JSON lines files, Flower's too, into the
Markdown table and the plot)::

    .venv/bin/python -m benchmarks.dp_privacy_utility --seeds 0 1 > fedlearn_dp.jsonl
    .venv/bin/python -m benchmarks.dp_privacy_utility --sampling fixed --seeds 0 1 > fedlearn_dp_fixed.jsonl
    .venv/bin/python -m benchmarks.dp_privacy_utility --table fedlearn_dp.jsonl fedlearn_dp_fixed.jsonl \\
        flower_dp.jsonl --plot docs/privacy-utility.png
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import dp_workload as workload

TARGETS = (1.0, 3.0, 8.0, math.inf)
RELATIONS = {
    "fixed": "100 of 1,000 without replacement (ε replace-one)",
    "poisson": "Poisson, rate 0.1 (ε add-or-remove-one)",
}
"""How each sampling is accounted: the two ε are under different neighbour relations (see dp_workload)."""


def dp_strategy(
    noise_multiplier: float, target: float, sampling: workload.Sampling, training: workload.Training
) -> Any:
    """The strategy of one run: FedAvg over ``training.sample`` nodes a round, with central DP unless ``target`` is ∞.

    This is the one place that knows fedlearn's DP API: ``Strategy(..., differential_privacy=...)``
    and the Poisson sampler in ``fedlearn.strategies.samplers``. The budget is the target itself,
    so the engine enforces exactly what was calibrated.
    """
    from dataclasses import fields, replace

    from fedlearn.strategies import Strategy, fedavg
    from fedlearn.strategies import samplers as sampler_module

    strategy = fedavg(fraction=training.rate)
    if sampling == "poisson" and hasattr(sampler_module, "poisson_sampler"):
        strategy = replace(strategy, sampler=sampler_module.poisson_sampler(training.rate))
    if math.isinf(target):
        return strategy
    has_poisson = hasattr(sampler_module, "poisson_sampler")
    if "differential_privacy" not in {f.name for f in fields(Strategy)} or (sampling == "poisson" and not has_poisson):
        raise SystemExit("this fedlearn has no DP engine or Poisson sampler yet; merge main")
    from fedlearn.privacy.differential import DifferentialPrivacy

    dp = DifferentialPrivacy(
        noise_multiplier=noise_multiplier, epsilon=target, clip=training.clip, delta=workload.DELTA, mechanism="central"
    )
    return replace(strategy, differential_privacy=dp)


def run(
    target: float, seed: int, sampling: workload.Sampling, data: workload.Data, training: workload.Training
) -> dict[str, Any]:
    """One fedlearn run at ε = ``target``; the JSON record of it."""
    from fedlearn.client.numpy_trainer import softmax_regression
    from fedlearn.data.dataset import Dataset
    from fedlearn.engine import EngineConfig
    from fedlearn.simulation import simulate

    noise_multiplier = workload.calibrate(target, sampling, training)
    partitions = [
        Dataset(x=x, y=y, n_classes=workload.CLASSES) for x, y in zip(data.train_x, data.train_y, strict=True)
    ]
    learner = softmax_regression(
        workload.FEATURES, workload.CLASSES, init_scale=workload.INIT_SCALE, learning_rate=training.learning_rate
    )
    config = EngineConfig(
        rounds=training.rounds,
        seed=seed,
        client_config={
            "learning_rate": training.learning_rate,
            "local_epochs": training.local_epochs,
            "batch_size": training.batch_size,
        },
    )
    strategy = dp_strategy(noise_multiplier, target, sampling, training)
    start = time.perf_counter()
    result = simulate(learner, partitions, strategy, config)
    wall = time.perf_counter() - start
    last = result.history[-1]
    return {
        "framework": "fedlearn",
        "eps_target": target,
        "seed": seed,
        "sampling": sampling,
        "sampler": type(strategy.sampler).__name__,
        "noise_multiplier": noise_multiplier,
        "noise_std_on_mean": noise_multiplier * training.clip / training.sample,
        "rounds": len(result.history),
        "accuracy": workload.accuracy([result.params["weight"], result.params["bias"]], data.test_x, data.test_y),
        "epsilon": workload.epsilon(noise_multiplier, sampling, training),
        "epsilon_engine": last.epsilon,
        "mean_sampled": statistics.fmean(r.sampled for r in result.history),
        "wall_s": wall,
        **{f"training.{k}": v for k, v in asdict(training).items()},
    }


def time_accounting(training: workload.Training, repeats: int) -> None:
    """How long the engine's ledger takes to price a run's ε, per sampling: the engine prices one ledger a round.

    The ledger is what the engine holds after ``training.rounds`` rounds (one charge, counted that
    many times), at the noise calibrated for ε = 1; each call composes it afresh, as
    ``PrivacyLedger.epsilon`` does. Printed as a Markdown table: median seconds per call.
    """
    from fedlearn.privacy.accountant import FixedSizeSampling, PoissonSampling
    from fedlearn.privacy.ledger import Charge, PrivacyLedger

    print("| sampling | charge | median s per `PrivacyLedger.epsilon()` | ε |")
    print("|---|---|---|---|")
    for sampling in ("fixed", "poisson"):
        z = workload.calibrate(1.0, sampling, training)
        if sampling == "fixed":
            charge = Charge(noise_multiplier=z / 2, sampling=FixedSizeSampling(population=workload.NODES,
                            sample=training.sample), count=training.rounds)  # fmt: skip
        else:
            charge = Charge(noise_multiplier=z, sampling=PoissonSampling(rate=training.rate), count=training.rounds)
        ledger = PrivacyLedger(delta=workload.DELTA).plus(charge)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            eps = ledger.epsilon()
            times.append(time.perf_counter() - start)
        print(f"| {sampling} | z = {charge.noise_multiplier:.3f} x {training.rounds} | "
              f"{statistics.median(times):.3f} s | {eps:.4f} |")  # fmt: skip


def table(paths: Sequence[Path], plot: Path | None) -> None:
    """Medians over seeds per (framework, sampling, ε target), as a Markdown table, and the plot."""
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = defaultdict(list)
    for path in paths:
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                groups[(record["framework"], record["sampling"], record["eps_target"])].append(record)
    print("| framework | sampling | target ε | noise multiplier z | ε (shared RDP accountant) | ε (framework's own) "
          "| accuracy (per seed) | accuracy (mean) | wall time per run |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    series: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for (framework, sampling, target), records in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        accs = [r["accuracy"] for r in records]
        eps = statistics.median(r["epsilon"] for r in records)
        own = [r.get("epsilon_engine", r.get("epsilon_flower")) for r in records]
        own_text = f"{statistics.median(own):.3f}" if None not in own else "-"
        z = statistics.median(r["noise_multiplier"] for r in records)
        wall = statistics.median(r["wall_s"] for r in records)
        print(f"| {framework} | {sampling} | {target:g} | {z:.3f} | {eps:.3f} | {own_text} | "
              f"{', '.join(f'{a:.4f}' for a in accs)} | {statistics.fmean(accs):.4f} | {wall:.1f} s |")  # fmt: skip
        series[(framework, sampling)].append((target, statistics.fmean(accs)))
    if plot is not None:
        draw(series, plot)


def draw(series: dict[tuple[str, str], list[tuple[float, float]]], path: Path) -> None:
    """Accuracy against ε (log scale); ε = ∞ drawn at the right edge and labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = [t for points in series.values() for t, _ in points if math.isfinite(t)]
    infinity = max(finite) * 3 if finite else 1.0
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (framework, sampling), points in sorted(series.items()):
        xs = [infinity if math.isinf(t) else t for t, _ in sorted(points)]
        ys = [a for _, a in sorted(points)]
        ax.plot(xs, ys, marker="o", label=f"{framework}: {RELATIONS[sampling]}")
    ticks = sorted(set(finite))
    ax.set_xscale("log")
    ax.set_xticks([*ticks, infinity], [*(f"{t:g}" for t in ticks), "∞ (no DP)"])
    ax.minorticks_off()
    ax.set_xlabel(f"ε at δ = {workload.DELTA:g} (RDP accountant)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Synthetic-IID, {workload.NODES} nodes, softmax regression")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--targets", type=float, nargs="+", default=list(TARGETS), help="ε targets; inf = no DP")
    parser.add_argument("--sampling", choices=("poisson", "fixed"), default="poisson")
    parser.add_argument("--rounds", type=int, default=workload.Training().rounds)
    parser.add_argument("--table", type=Path, nargs="+", help="JSON lines files to summarise instead of running")
    parser.add_argument("--plot", type=Path, help="with --table: write the accuracy-ε plot here (PNG)")
    parser.add_argument("--time-accounting", type=int, metavar="REPEATS", help="time the ledger's ε instead of running")
    args = parser.parse_args()
    logging.getLogger("absl").setLevel(logging.ERROR)
    if args.table:
        table(args.table, args.plot)
        return
    training = workload.Training(rounds=args.rounds)
    if args.time_accounting:
        time_accounting(training, args.time_accounting)
        return
    for seed in args.seeds:
        data = workload.make_data(seed)
        for target in args.targets:
            record = run(target, seed, args.sampling, data, training)
            print(json.dumps(record), flush=True)
            print(f"seed {seed} ε target {target:g} ({args.sampling}): z = {record['noise_multiplier']:.3f}, "
                  f"accuracy {record['accuracy']:.4f}, ε {record['epsilon']:.3f} (engine: {record['epsilon_engine']}), "
                  f"{record['wall_s']:.1f} s", file=sys.stderr, flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
