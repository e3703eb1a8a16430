"""Secure aggregation over the gRPC deployment: 10 node processes x 10M float32 parameters on loopback.

The same deployed run as ``runtime_throughput`` (a real coordinator, real node processes, a
learner that barely computes), once with FedAvg in the clear and once under SecAgg+ with 32-bit
encoding and the default degree and threshold, taking turns. Reports the median round time after
warm-up, bytes on the wire per round (the engine's count of task and reply payloads, keys and
shares included), and the peak RSS of the coordinator and of the largest node. Run from the
repository root:

    .venv/bin/python benchmarks/secagg_deployment.py               # 10 nodes x 10M, 3 repeats
    .venv/bin/python benchmarks/secagg_deployment.py --nodes 4 --size 100000 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECURE = """
[privacy.secure_aggregation]
enabled = true
clip = 1.0
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--size", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from benchmarks.runtime_throughput import deployed

    runs: dict[str, list[dict[str, float]]] = {"plain": [], "secure": []}
    for _ in range(args.repeats):
        for mode, extra in (("plain", ""), ("secure", SECURE)):
            with tempfile.TemporaryDirectory() as tmp:
                runs[mode].append(deployed(args.nodes, args.size, args.rounds, Path(tmp), extra))
    med = {mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for mode, rs in runs.items()}
    model_mb = args.size * 4 / 1e6
    plain = med["plain"]
    plain_bytes = plain["bytes_sent"] + plain["bytes_received"]
    print(f"{args.nodes} nodes x {args.size:,} float32 ({model_mb:,.0f} MB), median of {args.repeats} runs")
    print("| mode | round | ratio | bytes sent | bytes received | ratio of bytes | coordinator peak RSS "
          "| node peak RSS |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for mode, m in med.items():
        moved = m["bytes_sent"] + m["bytes_received"]
        print(
            f"| {mode} | {m['round_s']:.2f} s | {m['round_s'] / plain['round_s']:.2f}x "
            f"| {m['bytes_sent'] / 1e6:,.0f} MB | {m['bytes_received'] / 1e6:,.0f} MB | {moved / plain_bytes:.3f}x "
            f"| {m['coordinator_rss_mb']:,.0f} MB | {m['node_rss_mb']:,.0f} MB |"
        )


if __name__ == "__main__":
    main()
