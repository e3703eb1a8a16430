"""A model larger than 2 GB under secure aggregation, in simulation: it works, and memory stays O(model).

Three nodes (the fewest secure aggregation takes) each hold a float32 model of ``--size``
parameters (550M: 2.2 GB) and "train" by adding a node-specific constant (``runtime_learner``), so
the round's time is the protocol's. One secure FedAvg round runs in process; the script checks that
the aggregate equals the plain weighted mean to within the encoding's error bound and reports the
round time and the process's peak RSS as multiples of the model. Run from the repository root:

    .venv/bin/python benchmarks/secagg_large_model.py                  # 550M parameters
    .venv/bin/python benchmarks/secagg_large_model.py --size 50000000  # a quick check
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=550_000_000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from benchmarks.runtime_learner import make
    from fedlearn.data import load_dataset, partition
    from fedlearn.engine import EngineConfig
    from fedlearn.privacy.protocol import SecureAggregation
    from fedlearn.simulation import simulate
    from fedlearn.strategies import fedavg

    data = load_dataset("iris")
    parts = [data.subset(ix) for ix in partition("iid", data, 3, seed=0)]
    learner = make(data, size=args.size)
    settings = SecureAggregation(clip=1.0, max_weight=len(data), dropout_fraction=0.0)
    started = time.monotonic()
    result = simulate(learner, parts, replace(fedavg(), secure_aggregation=settings), EngineConfig(rounds=1, seed=0))
    seconds = time.monotonic() - started
    record = result.history[-1]
    got = result.params["weight"]
    initial = learner.init_params(0)["weight"]
    shifts = [(int(s) % 7) * 1e-3 for s in _node_seeds(len(parts))]
    expected = sum(len(p) * s for p, s in zip(parts, shifts, strict=True)) / sum(len(p) for p in parts)
    bound = settings.encoding(len(parts)).error_bound(len(parts)) / sum(len(p) for p in parts) + 1e-6
    error = float(np.abs((got.astype(np.float64) - initial) - expected).max())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model = args.size * 4
    print(f"{args.size:,} float32 parameters ({model / 1e9:.2f} GB), 3 nodes, one secure round")
    print(f"secure={record.secure} survived={record.survived} round {record.duration_s:.1f} s "
          f"(whole run {seconds:.1f} s); max error {error:.2e} (bound {bound:.2e})")  # fmt: skip
    print(f"peak RSS {peak / 1e9:.2f} GB = {peak / model:.2f}x the model")
    if error > bound:
        raise SystemExit("the secure aggregate is not the plain mean")


def _node_seeds(nodes: int) -> list[int]:
    from fedlearn.engine import seeding
    from fedlearn.simulation.run import node_ids

    return [seeding.node_seed(0, 1, node) for node in node_ids(nodes)]


if __name__ == "__main__":
    main()
