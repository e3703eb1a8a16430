"""Flower's SecAgg+ against Flower's plain FedAvg, in Flower's own simulation: round time and peak memory.

Why: fedlearn's ``secagg_simulation.py`` measures fedlearn's SecAgg+ against fedlearn's plain FedAvg.
This script measures the competitor the same way, on the same workload, so the two overheads can be
set side by side: Flower 1.42's ``SecAggPlusWorkflow`` (server) with ``secaggplus_mod`` (clients)
against Flower's default fit workflow, both under ``DefaultWorkflow`` with the legacy ``FedAvg``
strategy, in ``flwr.simulation.run_simulation`` (the Ray backend, the only one Flower ships).

The workload: ``--nodes`` clients, every one sampled every round, and a model of one float32 array
of ``--size`` elements (1,001,000 = 1000 features x 1000 classes + 1000 biases, as fedlearn's case
(a)). Clients do next to no compute: they return the received parameters plus 1e-3, as float32,
with ``num_examples`` = 160 (fedlearn's 5 steps x 32 samples), so the round time is Flower's
aggregation machinery. Evaluation is off. The last round's global model is checked against the
expected value (``rounds * 1e-3`` everywhere) and the largest error is reported.

SecAgg+ settings, chosen to match fedlearn's defaults at 100 nodes (degree 26, threshold 16,
clip 1.0, sums mod 2^32): ``num_shares`` = 27 (Flower counts the node itself: 26 neighbours + 1),
``reconstruction_threshold`` = 16, ``clipping_range`` = 1.0, ``max_weight`` = 160 (fedlearn's
``max_weight``), ``modulus_range`` = 2^32 (Flower's default and its maximum),
``quantization_range`` = 2^22 (Flower's default; 100 x 2^22 < 2^32 so the sum cannot wrap),
``timeout`` = None (Flower's default: wait for every reply). For other node counts, pass
fedlearn's degree + 1 and threshold with ``--num-shares`` and ``--threshold``.

Each run is a fresh interpreter (Ray is started and stopped with it), and the modes take turns
within each repeat. Round 1 is warm-up and not counted; a round's time runs from the end of the
previous round's aggregation (Flower's centralized-evaluation hook, called once per round) to the
end of its own, as in fedlearn's benchmark. Memory is sampled every 0.2 s over every process of
the run (the driver, Ray's GCS, raylet and workers, found by an environment marker): the peak of
the summed PSS (shared pages, such as Ray's object store, counted once) and of the summed RSS,
plus the driver's own peak RSS. The same processes' CPU time (user + system) is read at each round's
end, so each round also has a CPU cost, steadier than wall time when other work shares the cores.
Each client asks Ray for 1 CPU (``--cpus``; Flower's default of 2 would run one client at a time on
a 2-core machine).

Install Flower in its own venv (it is not a fedlearn dependency)::

    python3 -m venv /work/flwr/venv && /work/flwr/venv/bin/pip install "flwr[simulation]"

Run from the repository root::

    /work/flwr/venv/bin/python benchmarks/flower_secagg.py --nodes 100 --size 1001000 --rounds 3 --repeats 2
    /work/flwr/venv/bin/python benchmarks/flower_secagg.py --nodes 20 --size 1001000 --num-shares 7 --threshold 4
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

MODES = ("plain", "secure")
DELTA = 1e-3
NUM_EXAMPLES = 160
CLIPPING_RANGE = 1.0
QUANTIZATION_RANGE = 2**22
MODULUS_RANGE = 2**32
MARKER = "FLOWER_SECAGG_BENCH"
RESULT = "RESULT "


def child(mode: str, nodes: int, size: int, rounds: int, num_shares: int, threshold: int, cpus: float) -> None:
    """Run one simulation in this interpreter and print its timings as one JSON line."""
    import logging

    import numpy as np
    from flwr.client import ClientApp, NumPyClient
    from flwr.client.mod import secaggplus_mod
    from flwr.common import Context, NDArrays, Parameters, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
    from flwr.simulation import run_simulation

    logging.getLogger("flwr").setLevel(logging.WARNING)
    marker = os.environ.get(MARKER, "")
    marks: list[float] = []
    cpu_marks: list[float] = []
    check: dict[str, Any] = {}

    class EchoClient(NumPyClient):
        def fit(self, parameters: NDArrays, config: dict[str, Scalar]) -> tuple[NDArrays, int, dict[str, Scalar]]:
            return [(p + DELTA).astype(np.float32) for p in parameters], NUM_EXAMPLES, {}

    class TimedFedAvg(FedAvg):
        """FedAvg whose centralized-evaluation hook, called after every round's aggregation, stamps the time."""

        def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, dict[str, Scalar]] | None:
            marks.append(time.perf_counter())
            cpu_marks.append(scan_tree(marker)[2])
            if server_round == rounds:
                (model,) = parameters_to_ndarrays(parameters)
                check.update(dtype=str(model.dtype), max_error=float(np.max(np.abs(model - rounds * DELTA))))
            return None

    def client_fn(context: Context) -> Any:
        return EchoClient().to_client()

    server_app = ServerApp()

    @server_app.main()
    def server_main(grid: Grid, context: Context) -> None:
        strategy = TimedFedAvg(
            fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=nodes, min_available_clients=nodes,
            initial_parameters=ndarrays_to_parameters([np.zeros(size, dtype=np.float32)]),
        )  # fmt: skip
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=rounds), strategy=strategy)
        fit_workflow = None
        if mode == "secure":
            fit_workflow = SecAggPlusWorkflow(
                num_shares=num_shares, reconstruction_threshold=threshold, max_weight=NUM_EXAMPLES,
                clipping_range=CLIPPING_RANGE, quantization_range=QUANTIZATION_RANGE, modulus_range=MODULUS_RANGE,
                timeout=None,
            )  # fmt: skip
        DefaultWorkflow(fit_workflow=fit_workflow)(grid, context=legacy)

    client_app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod] if mode == "secure" else [])
    start = time.perf_counter()
    run_simulation(
        server_app=server_app, client_app=client_app, num_supernodes=nodes,
        backend_config={"client_resources": {"num_cpus": cpus, "num_gpus": 0.0}},
    )  # fmt: skip
    total = time.perf_counter() - start
    if len(marks) != rounds + 1 or not check:
        raise RuntimeError(f"the simulation did not finish its {rounds} rounds ({len(marks) - 1} done)")
    rounds_s = [b - a for a, b in itertools.pairwise(marks)]
    rounds_cpu_s = [b - a for a, b in itertools.pairwise(cpu_marks)]
    print(RESULT + json.dumps({
        "rounds_s": rounds_s,
        "round_s": statistics.median(rounds_s[1:]),
        "warmup_s": rounds_s[0],
        "rounds_cpu_s": rounds_cpu_s,
        "round_cpu_s": statistics.median(rounds_cpu_s[1:]),
        "total_s": total,
        "driver_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **check,
    }), flush=True)  # fmt: skip


def scan_tree(marker: str) -> tuple[float, float, float]:
    """Summed PSS (MB), RSS (MB) and CPU time (s) of every live process whose environment carries ``marker``."""
    pss = rss = ticks = 0
    needle = f"{MARKER}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            stat = (entry / "stat").read_text().rpartition(")")[2].split()
            ticks += int(stat[11]) + int(stat[12])  # utime and stime, fields 14 and 15 of /proc/PID/stat
            for line in (entry / "smaps_rollup").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("Pss", "Rss"):
                    kb = int(value.split()[0])
                    pss, rss = (pss + kb, rss) if key == "Pss" else (pss, rss + kb)
        except (OSError, ValueError, IndexError):
            continue
    return pss / 1024, rss / 1024, ticks / os.sysconf("SC_CLK_TCK")


def measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """One run of ``mode`` in a fresh interpreter, with its process tree's memory sampled meanwhile."""
    marker = uuid.uuid4().hex
    env = {**os.environ, MARKER: marker, "FLWR_TELEMETRY_ENABLED": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    command = [sys.executable, __file__, "--child", mode, "--nodes", str(args.nodes), "--size", str(args.size),
               "--rounds", str(args.rounds), "--num-shares", str(args.num_shares), "--threshold", str(args.threshold),
               "--cpus", str(args.cpus)]  # fmt: skip
    peak = {"tree_pss_mb": 0.0, "tree_rss_mb": 0.0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            pss, rss, _ = scan_tree(marker)
            peak["tree_pss_mb"], peak["tree_rss_mb"] = max(peak["tree_pss_mb"], pss), max(peak["tree_rss_mb"], rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=args.timeout)
    finally:
        done.set()
        sampler.join()
    lines = [line for line in out.stdout.splitlines() if line.startswith(RESULT)]
    if out.returncode != 0 or not lines:
        sys.stderr.write(out.stderr[-5000:])
        raise RuntimeError(f"{mode} run failed with exit code {out.returncode}")
    return {**json.loads(lines[-1].removeprefix(RESULT)), **peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--size", type=int, default=1_001_000, help="float32 parameters in the model")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--num-shares", type=int, default=27, help="fedlearn's default degree + 1 at 100 nodes")
    parser.add_argument("--threshold", type=int, default=16, help="fedlearn's default threshold at 100 nodes")
    parser.add_argument("--cpus", type=float, default=1.0, help="Ray CPUs per client (Flower's default is 2)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds before a run is abandoned")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.nodes, args.size, args.rounds, args.num_shares, args.threshold, args.cpus)
        return
    if args.rounds < 2:
        parser.error("--rounds must be at least 2: round 1 is warm-up")
    from importlib.metadata import version

    print(f"flwr {version('flwr')}, ray {version('ray')}, numpy {version('numpy')}, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cpus")  # fmt: skip
    print(f"{args.nodes} nodes x {args.size:,} float32 parameters, {args.rounds} rounds (round 1 warm-up), "
          f"{args.repeats} repeats, modes taking turns, {args.cpus:g} Ray CPUs per client")  # fmt: skip
    print(f"SecAggPlusWorkflow(num_shares={args.num_shares}, reconstruction_threshold={args.threshold}, "
          f"max_weight={NUM_EXAMPLES}, clipping_range={CLIPPING_RANGE}, quantization_range=2**22, "
          f"modulus_range=2**32, timeout=None)", flush=True)  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in args.modes}
    for repeat in range(args.repeats):
        for mode in args.modes:
            run = measure(mode, args)
            runs[mode].append(run)
            wall = ", ".join(f"{x:.2f}" for x in run["rounds_s"])
            cpu = ", ".join(f"{x:.2f}" for x in run["rounds_cpu_s"])
            print(f"  repeat {repeat + 1} {mode}: rounds [{wall}] s, CPU [{cpu}] s, total {run['total_s']:.1f} s, "
                  f"tree PSS {run['tree_pss_mb']:.0f} MB, tree RSS {run['tree_rss_mb']:.0f} MB, "
                  f"driver RSS {run['driver_rss_mb']:.0f} MB, model {run['dtype']} max error {run['max_error']:.2e}",
                  flush=True)  # fmt: skip
    keys = ("round_s", "round_cpu_s", "warmup_s", "tree_pss_mb", "tree_rss_mb", "driver_rss_mb")
    med = {mode: {k: statistics.median(r[k] for r in rs) for k in keys} for mode, rs in runs.items()}
    base = med.get("plain")
    print(f"medians of {args.repeats} runs")
    print("| mode | round | ratio | CPU per round | ratio | round 1 (warm-up) | peak PSS (tree) | peak RSS (tree) "
          "| peak RSS (driver) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, m in med.items():
        ratio = f"{m['round_s'] / base['round_s']:.2f}x" if base else "-"
        cpu_ratio = f"{m['round_cpu_s'] / base['round_cpu_s']:.2f}x" if base else "-"
        print(f"| {mode} | {m['round_s']:.2f} s | {ratio} | {m['round_cpu_s']:.2f} s | {cpu_ratio} "
              f"| {m['warmup_s']:.1f} s | {m['tree_pss_mb']:.0f} MB | {m['tree_rss_mb']:.0f} MB "
              f"| {m['driver_rss_mb']:.0f} MB |")  # fmt: skip


if __name__ == "__main__":
    main()
