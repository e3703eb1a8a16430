"""Federated scoring and evaluation on one node, against the plain code a user would write instead.

* scoring: the node's ``score`` handler (read its SQLite dataset in chunks, encode with the
  package's schema, predict, upsert through batch scoring's job and sink) against a baseline
  that selects the same rows, predicts with the same model and inserts them with ``executemany``
  into a fresh table (no idempotence, no checks).
* evaluation: the ``evaluate_model`` handler (encode, predict probabilities, confusion matrix and
  1000-bin histograms) plus the coordinator's metrics from the sums, against scikit-learn's
  ``confusion_matrix`` and ``roc_auc_score`` on the same predictions.

Each is the median of ``--repeats`` runs; the ratio is handler over baseline in the same run.
Run from the repository root:

    .venv/bin/python benchmarks/federated_scoring.py                      # 200,000 rows, 5 repeats
    .venv/bin/python benchmarks/federated_scoring.py --rows 20000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

FEATURES = [f"f{i}" for i in range(10)]


def _package(seed: int = 0):  # type: ignore[no-untyped-def]
    from fedlearn.core.params import ParamSet
    from fedlearn.data.schema import InputSchema
    from fedlearn.registry.package import ModelPackage

    rng = np.random.default_rng(seed)
    params = ParamSet({"weight": rng.standard_normal((len(FEATURES), 2)).astype(np.float32),
                       "bias": rng.standard_normal(2).astype(np.float32)})  # fmt: skip
    return ModelPackage(name="bench", version=1, kind="learner", model="numpy.softmax", task="classification",
                        classes=(0, 1), schema=InputSchema.numeric(FEATURES), params=params)  # fmt: skip


def _database(path: Path, rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, rows)
    x = rng.standard_normal((rows, len(FEATURES))) + y[:, None] * 0.5
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE customers (id INTEGER PRIMARY KEY, {', '.join(f'{f} REAL' for f in FEATURES)}, "
                     "label INTEGER)")  # fmt: skip
        marks = ", ".join("?" for _ in range(len(FEATURES) + 2))
        conn.executemany(f"INSERT INTO customers VALUES ({marks})",
                         [(i, *map(float, r), int(t)) for i, (r, t) in enumerate(zip(x, y, strict=True))])  # fmt: skip
    return x.astype(np.float32), y


def _node(directory: Path, url: str):  # type: ignore[no-untyped-def]
    from fedlearn.analytics.policy import DisclosurePolicy
    from fedlearn.client.node_app import NodeApp
    from fedlearn.registry.node_scoring import scoring_handlers
    from fedlearn.runtime.node_config import load_node_config

    toml = f"""[node]
dataset = "customers"
holdout_fraction = 0.5
[scoring]
allow = true
[datasets.customers]
source = "sql"
url = "{url}"
query = "SELECT * FROM customers"
target = "label"
features = {json.dumps(FEATURES)}
n_classes = 2
"""
    (directory / "NODE.toml").write_text(toml)
    config = load_node_config(directory / "NODE.toml")
    policy = DisclosurePolicy(**config.policy.model_dump(exclude={"audit_log"}))
    return NodeApp(node_id="bench", handlers=scoring_handlers(config, config.load_datasets(), policy=policy)), config


def _median(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from sklearn.metrics import confusion_matrix, roc_auc_score

    from fedlearn.core.messages import EVALUATE_MODEL, SCORE, Task
    from fedlearn.data.split import hold_out
    from fedlearn.registry.federated_metrics import EvaluationSums
    from fedlearn.registry.node_scoring import model_task_config
    from fedlearn.registry.predictors import load_package

    package = _package()
    model = load_package(package)
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        path = directory / "node.db"
        _database(path, args.rows)
        app, config = _node(directory, f"sqlite:///{path}")
        base = model_task_config(package)
        score_task = Task(kind=SCORE, round=0, params=package.params,
                          config={**base, "dataset": "customers", "write": "scores", "keys": '["id"]'})  # fmt: skip
        eval_task = Task(kind=EVALUATE_MODEL, round=0, params=package.params,
                         config={**base, "dataset": "customers", "bins": 1000})  # fmt: skip

        def handler_score() -> None:
            reply = app.handle(score_task)
            assert reply.ok, reply.error

        counter = iter(range(10**6))

        def baseline_score() -> None:
            table = f"plain_{next(counter)}"
            with sqlite3.connect(path) as conn:
                conn.execute(f"CREATE TABLE {table} (id INTEGER, prediction REAL, model_version TEXT)")
                rows = conn.execute(f"SELECT id, {', '.join(FEATURES)} FROM customers").fetchall()
                data = np.array(rows, dtype=np.float64)
                predictions = model.predict(data[:, 1:].astype(np.float32))
                values = [(int(i), float(p), "bench/1") for i, p in zip(data[:, 0], predictions, strict=True)]
                conn.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)", values)

        held = hold_out(config.load_datasets()["customers"], 0.5, 0)[1]

        def handler_evaluate() -> None:
            reply = app.handle(eval_task)
            assert reply.ok, reply.error
            EvaluationSums.from_params(reply.params, task="classification", n_classes=2, bins=1000).metrics()

        def baseline_evaluate() -> None:
            probabilities = model.predict_proba(held.x)
            confusion_matrix(held.y, probabilities.argmax(axis=1))
            roc_auc_score(held.y, probabilities[:, 1])

        handler_score()  # warm: the table exists from here on, as for every run after the first
        results = {
            "score (handler: batch scoring job)": _median(handler_score, args.repeats),
            "score (baseline: select, predict, executemany)": _median(baseline_score, args.repeats),
            "evaluate (handler sums + pooled metrics)": _median(handler_evaluate, args.repeats),
            "evaluate (baseline: scikit-learn on the rows)": _median(baseline_evaluate, args.repeats),
        }
    names = list(results)
    print(f"rows: {args.rows:,} (evaluation on the {len(held):,} held-out), repeats: {args.repeats}")
    for name, seconds in results.items():
        print(f"{name:50s} {seconds * 1000:10.1f} ms")
    print(f"scoring ratio (handler / baseline): {results[names[0]] / results[names[1]]:.2f}")
    print(f"evaluation ratio (handler / baseline): {results[names[2]] / results[names[3]]:.2f}")


if __name__ == "__main__":
    main()
