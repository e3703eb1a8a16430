"""Case (a) of ``simulation_overhead.py``, with the loops interleaved in one process.

The plain loop with two BLAS threads is erratic on a shared 2-core VM. Alternating the plain
loop (BLAS threads as chosen by BLAS, and one thread) with fedlearn's in-process simulation, three
times each, makes the comparison steadier. Run from the repository root:

    .venv/bin/python benchmarks/simulation_interleaved.py
"""

from __future__ import annotations

import itertools
import statistics
import sys
from pathlib import Path

import numpy  # noqa: F401 - BLAS must be loaded before it can be limited
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
import simulation_overhead as so

NODES = 30
so.CASES["interleaved"] = (NODES, 1000, 1000, 4)


def per_node_ms(ends: list[float]) -> list[float]:
    return [(b - a) * 1000 / NODES for a, b in itertools.pairwise(ends)]  # round 1 is warm-up


def main() -> None:
    results: dict[str, list[float]] = {"plain, BLAS threads as chosen": [], "plain, 1 BLAS thread": [],
                                       "fedlearn in process, 1 BLAS thread": []}  # fmt: skip
    names = list(results)
    for _ in range(3):
        results[names[0]] += per_node_ms(so.run_plain("interleaved")[1])
        with threadpool_limits(1, user_api="blas"):
            results[names[1]] += per_node_ms(so.run_plain("interleaved")[1])
        results[names[2]] += per_node_ms(so.run_fedlearn("interleaved", "inprocess")[1])
    print("| loop | per node per round (median) |")
    print("|---|---|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.2f} ms |")


if __name__ == "__main__":
    main()
