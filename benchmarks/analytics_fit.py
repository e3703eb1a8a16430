"""Exact federated linear regression against scikit-learn fitted on the pooled array.

Defaults: 10 million rows x 50 features across 10 nodes of 1 million rows each. Every node's rows
are written once to its own binary file (float64, features then target), standing in for the
node's own storage; the federated side never holds more than one chunk of them.

* federated: an ``AnalyticsJob`` joins each node, whose handler summarises its file in chunks (the
  whole path: tasks, replies, privacy guard), then the coordinator solves from the merged
  summaries. Nodes run one after another here; in a federation they run in parallel, so the
  slowest node bounds the wall time. The refit (merge 10 summaries, solve) is timed on its own.
* pooled: read every file into one array, then time ``LinearRegression().fit``.

Each measurement runs in a fresh interpreter, so its peak RSS (``ru_maxrss``) is its own; a
worker that only imports the libraries gives the baseline. Run from the repository root:

    .venv/bin/python benchmarks/analytics_fit.py                                # the full run
    .venv/bin/python benchmarks/analytics_fit.py --rows 200000 --repeats 1     # a quick look
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

SEED = 0
CHUNK_ROWS = 65_536


def _names(features: int) -> list[str]:
    return [f"f{i}" for i in range(features)]


def generate(directory: Path, rows: int, features: int, nodes: int) -> list[Path]:
    """Correlated features with non-zero means, a linear target with noise; written in chunks."""
    import numpy as np

    base = np.random.default_rng(SEED)
    mixing = base.standard_normal((features, features)) / np.sqrt(features)
    offset = base.uniform(-100.0, 100.0, features)
    weights = base.standard_normal(features)
    files = []
    for node, part in enumerate(np.array_split(np.arange(rows), nodes)):
        rng = np.random.default_rng([SEED, node])
        path = directory / f"node{node}.f64"
        with path.open("wb") as handle:
            for start in range(0, len(part), CHUNK_ROWS):
                n = min(CHUNK_ROWS, len(part) - start)
                x = rng.standard_normal((n, features)) @ mixing + offset
                y = x @ weights + 5.0 + rng.standard_normal(n)
                np.column_stack([x, y]).tofile(handle)
        files.append(path)
    return files


class BinaryTable:
    """A node's file as an analytics ``Table``: read chunk by chunk, never whole."""

    def __init__(self, path: Path, features: int) -> None:
        self.path = path
        self.columns = [*_names(features), "y"]

    def schema(self) -> Mapping[str, str]:
        return dict.fromkeys(self.columns, "float")

    def chunks(self, columns: Sequence[str], chunk_rows: int = CHUNK_ROWS) -> Iterator[Any]:
        import numpy as np

        index = [self.columns.index(c) for c in columns]
        width = len(self.columns)
        with self.path.open("rb") as handle:
            while True:
                block = np.fromfile(handle, dtype=np.float64, count=chunk_rows * width)
                if not block.size:
                    return
                yield block.reshape(-1, width)[:, index]


def run_federated(files: list[Path], features: int, out: Path) -> dict[str, float]:
    import numpy as np

    from fedlearn.analytics import AnalyticsJob, FederatedLinearRegression

    job = AnalyticsJob(columns=_names(features), target="y", chunk_rows=CHUNK_ROWS)
    node_s = []
    for i, path in enumerate(files):
        started = time.perf_counter()
        job.join(f"node{i}", BinaryTable(path, features))
        node_s.append(time.perf_counter() - started)
    refits = []
    for _ in range(20):
        started = time.perf_counter()
        model = job.fit(FederatedLinearRegression())
        refits.append(time.perf_counter() - started)
    np.save(out / "federated_coef.npy", np.append(model.coef_, model.intercept_))
    return {
        "summarize_s": sum(node_s),
        "median_node_s": statistics.median(node_s),
        "slowest_node_s": max(node_s),
        "refit_s": statistics.median(refits),
    }


def run_pooled(files: list[Path], features: int, rows: int, out: Path) -> dict[str, float]:
    import numpy as np
    from sklearn.linear_model import LinearRegression

    started = time.perf_counter()
    x, y = np.empty((rows, features)), np.empty(rows)
    filled = 0
    for path in files:
        for block in BinaryTable(path, features).chunks([*_names(features), "y"]):
            x[filled : filled + len(block)], y[filled : filled + len(block)] = block[:, :-1], block[:, -1]
            filled += len(block)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    model = LinearRegression().fit(x, y)
    fit_s = time.perf_counter() - started
    np.save(out / "pooled_coef.npy", np.append(model.coef_, model.intercept_))
    return {"load_s": load_s, "fit_s": fit_s}


def run_baseline() -> dict[str, float]:
    import sklearn.linear_model  # noqa: F401

    import fedlearn.analytics  # noqa: F401

    return {}


def child(mode: str, directory: Path, rows: int, features: int, nodes: int) -> None:
    files = [directory / f"node{i}.f64" for i in range(nodes)]
    if mode == "federated":
        result = run_federated(files, features, directory)
    elif mode == "pooled":
        result = run_pooled(files, features, rows, directory)
    else:
        result = run_baseline()
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def measure(mode: str, directory: Path, rows: int, features: int, nodes: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", mode, str(directory), str(rows), str(features), str(nodes)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, help="Where to write node files (default: a temporary directory).")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, directory, rows, features, nodes = args.child
        child(mode, Path(directory), int(rows), int(features), int(nodes))
        return

    import numpy as np

    directory = Path(tempfile.mkdtemp(prefix="analytics_fit_", dir=args.data_dir))
    try:
        started = time.perf_counter()
        generate(directory, args.rows, args.features, args.nodes)
        print(
            f"wrote {args.nodes} node files, {args.rows:,} rows x {args.features} features, "
            f"in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        shape = (directory, args.rows, args.features, args.nodes)
        runs = {
            mode: [measure(mode, *shape) for _ in range(args.repeats)] for mode in ("baseline", "federated", "pooled")
        }
        med = {mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for mode, rs in runs.items()}
        ours, theirs = np.load(directory / "federated_coef.npy"), np.load(directory / "pooled_coef.npy")
        agreement = float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    fed, pooled, base = med["federated"], med["pooled"], med["baseline"]["rss_mb"]
    print(
        f"{args.rows:,} rows x {args.features} features, {args.nodes} nodes; median of {args.repeats} runs; "
        f"interpreter + imports alone: {base:.0f} MB"
    )
    print()
    print("| approach | time | peak RSS |")
    print("|---|---|---|")
    print(
        f"| federated: summarise all {args.nodes} nodes, one after another | {fed['summarize_s']:.2f} s "
        f"| {fed['rss_mb']:.0f} MB |"
    )
    print(
        f"| federated: one node, median (slowest) of {args.nodes}; the wall time when nodes run in parallel "
        f"| {fed['median_node_s']:.2f} s ({fed['slowest_node_s']:.2f} s) | (same process) |"
    )
    print(
        f"| federated: refit from the {args.nodes} summaries (merge + solve) | {fed['refit_s'] * 1000:.2f} ms "
        "| (same process) |"
    )
    print(
        f"| scikit-learn `LinearRegression.fit` on the pooled array | {pooled['fit_s']:.2f} s "
        f"| {pooled['rss_mb']:.0f} MB |"
    )
    print(f"| scikit-learn: reading the pooled array first | {pooled['load_s']:.2f} s | (same process) |")
    print()
    print(f"largest coefficient difference, relative to the largest coefficient: {agreement:.1e}")


if __name__ == "__main__":
    main()
