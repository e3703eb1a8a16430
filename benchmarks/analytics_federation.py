"""A standing federation against on-demand analytics: what each change and each model fetch costs.

The workload: ``--nodes`` in-process nodes, each holding ``--rows`` rows of ``--features`` correlated
features and a linear target, plus one extra batch of ``--rows`` rows on the first node. The store
is a SQLite file in a temporary directory; the nodes answer through the real analytics handlers
(policy guard included) over an in-process fleet, so what is timed is the coordinator's path and
the nodes' summarising, without a network.

* baseline: ``POST /api/analytics``'s work (:func:`run_request`) fitting ridge over every node:
  every call has every node summarise its rows again.
* refresh: every member summarises every batch again, the models are refitted and stored.
* add: one node summarises its new batch; the models are refitted from the stored summaries.
* remove: no node is asked; the member's summary is re-merged from its kept batches, then refitted.
* fetch: the kept model's arrays, read from the store, as the API answers them.

Each figure is the median of ``--repeats`` runs, with its ratio to the baseline measured in the
same process. Run from the repository root:

    PYTHONPATH=src .venv/bin/python benchmarks/analytics_federation.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fedlearn.analytics.federation import BatchRequest, FederationRequest, Federations
from fedlearn.analytics.handlers import analytics_handlers
from fedlearn.analytics.remote import AnalyticsRequest, run_request
from fedlearn.client.node_app import NodeApp
from fedlearn.runtime.coordinator import Coordinator
from fedlearn.runtime.store import open_store
from fedlearn.simulation.inprocess import InProcessFleet


def node_data(nodes: int, rows: int, features: int) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Each node's ``main`` dataset, and an ``extra`` batch on the first node, as columns."""
    base = np.random.default_rng(0)
    mixing = base.standard_normal((features, features)) / np.sqrt(features)
    weights = base.standard_normal(features)

    def table(seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([0, seed])
        x = rng.standard_normal((rows, features)) @ mixing + 3.0
        y = x @ weights + rng.standard_normal(rows)
        return {**{f"f{i}": x[:, i] for i in range(features)}, "y": y}

    data = {f"node-{n}": {"main": table(n)} for n in range(nodes)}
    data["node-0"]["extra"] = table(nodes)
    return data


def median_seconds(action: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    data = node_data(args.nodes, args.rows, args.features)
    columns = [f"f{i}" for i in range(args.features)]
    members = {node: "main" for node in data}
    fleet = InProcessFleet(list(data), lambda name: NodeApp(node_id=name, handlers=analytics_handlers(data[name])))
    with tempfile.TemporaryDirectory() as tmp, open_store(f"sqlite:///{Path(tmp) / 'store.db'}") as store:
        for node in data:
            store.add_node(node)
        coordinator = Coordinator(store, fleet)
        federations = Federations(coordinator)
        federations.create(FederationRequest(name="bench", columns=columns, target="y", members=members,
                                             models=["linear", "ridge", "pca", "covariance"]))  # fmt: skip
        federations.refresh("bench")
        request = AnalyticsRequest(columns=columns, target="y", members=members, model="ridge")

        def on_demand() -> None:
            with coordinator.fleet_access(wait=10, purpose="benchmark") as held:
                run_request(request, held)

        def add_then_remove() -> tuple[float, float]:
            start = time.perf_counter()
            batch = federations.add_batch("bench", "node-0", BatchRequest(dataset="extra"))
            middle = time.perf_counter()
            federations.remove_batch("bench", "node-0", batch["id"])
            return middle - start, time.perf_counter() - middle

        baseline = median_seconds(on_demand, args.repeats)
        refresh = median_seconds(lambda: federations.refresh("bench"), args.repeats)
        pairs = [add_then_remove() for _ in range(args.repeats)]
        add = statistics.median(p[0] for p in pairs)
        remove = statistics.median(p[1] for p in pairs)
        fetch = median_seconds(lambda: federations.model("bench", "ridge"), args.repeats)
    fleet.close()
    print(f"{args.nodes} nodes x {args.rows} rows x {args.features} features, median of {args.repeats}")
    print("| operation | time | ratio to on-demand |\n|---|---|---|")
    for label, seconds in [
        ("on-demand `POST /api/analytics` ridge (baseline)", baseline),
        ("refresh: every node summarises again, 4 models refitted and stored", refresh),
        ("add a batch: one node summarises it, 4 models refitted and stored", add),
        ("remove a batch: re-merge kept summaries, 4 models refitted and stored", remove),
        ("fetch the kept ridge model", fetch),
    ]:
        print(f"| {label} | {seconds * 1000:.1f} ms | {seconds / baseline:.3f} |")


if __name__ == "__main__":
    main()
