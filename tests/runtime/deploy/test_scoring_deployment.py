"""Federated scoring and evaluation through a deployed coordinator and real node processes on loopback.

One node keeps its rows in a SQLite file, the other in a PostgreSQL table. Each writes its predictions
into its own database; the coordinator's answers hold counts and sums only, and the pooled evaluation
equals the metrics of the nodes' pooled held-out rows, rebuilt here from their own NODE.toml files.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score
from sqlalchemy import create_engine, text

from fedlearn.data.split import hold_out
from fedlearn.data.sql import driver_url
from fedlearn.registry.catalog import register
from fedlearn.registry.predictors import load_package
from fedlearn.runtime.node_config import load_node_config
from fedlearn.runtime.store import open_store
from tests.registry.federated.models import FEATURES, rows, softmax_package
from tests.registry.federated.node import dataset_toml, sqlite_table
from tests.runtime.deploy.conftest import Deployment
from tests.sql_tables import scratch_table

pytestmark = pytest.mark.slow
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
NODE_HEAD = '[node]\ndataset = "customers"\nholdout_fraction = 0.3\nholdout_seed = 1\n[scoring]\nallow = true\n'
BINS = 100


@pytest.fixture
def postgres_table() -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL data table (id, f0.., label) and the name of the node's prediction table; dropped after."""
    predictions = f"fedscore_deploy_pred_{uuid.uuid4().hex[:10]}"
    x, y = rows(90, seed=21)
    columns = f"id INTEGER, {', '.join(f'{f} FLOAT' for f in FEATURES)}, label INTEGER"
    values = [(5000 + i, *map(float, r), int(t)) for i, (r, t) in enumerate(zip(x, y, strict=True))]
    with scratch_table(POSTGRES_URL, "fedscore_deploy", columns, values, also_drop=(predictions,)) as data:
        yield data, predictions


def _count(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(driver_url(url))
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql)).fetchall()]
    finally:
        engine.dispose()


def test_nodes_score_into_their_own_databases_and_evaluation_pools_exactly(
    deployment: Deployment, postgres_table: tuple[str, str]
) -> None:
    data, pg_predictions = postgres_table
    x, y = rows(120, seed=20)
    sqlite_url = sqlite_table(deployment.tmp / "clinic.db", x, y)
    package = softmax_package(seed=3)
    deployment.register("sq", "pg")
    with open_store(deployment.store_url) as store:
        record = register(store, package)
        store.set_model_alias(record.name, "champion", record.version)
    deployment.start_coordinator()
    audit = '[policy]\naudit_log = "sq-audit.jsonl"\n'
    deployment.start_node("sq", NODE_HEAD + audit + dataset_toml("customers", sqlite_url, "SELECT * FROM customers"))
    deployment.start_node("pg", NODE_HEAD + dataset_toml("customers", POSTGRES_URL, f"SELECT * FROM {data}"))
    deployment.wait_for_nodes(2)

    with deployment.client() as client:
        client.score_remote("churn@champion", dataset="customers", write=pg_predictions, keys=["id"], timeout=60)
        scored = client.score_remote("churn@champion", dataset="customers", write=pg_predictions, keys=["id"],
                                     timeout=60)  # fmt: skip
        evaluated = client.evaluate_remote("churn@champion", dataset="customers", bins=BINS, timeout=60)

    for url, count in ((sqlite_url, 120), (POSTGRES_URL, 90)):  # each node's own database, once per key
        written = _count(url, f"SELECT id, model_version FROM {pg_predictions}")
        assert len(written) == count and len({r[0] for r in written}) == count
        assert {r[1] for r in written} == {"churn/1"}
    assert scored.pooled == {"rows_scored": 210, "rows_skipped": 0, "nodes_ok": 2, "nodes_failed": 0}
    assert all(set(entry) == {"ok", "error", "rows_scored", "rows_skipped", "predicted", "suppressed"}
               for entry in scored.nodes.values())  # fmt: skip

    held = [hold_out(load_node_config(deployment.tmp / f"{n}.toml").load_datasets()["customers"], 0.3, 1)[1]
            for n in ("sq", "pg")]  # fmt: skip
    pooled_x = np.concatenate([h.x for h in held])
    pooled_y = np.concatenate([h.y for h in held])
    probabilities = load_package(package).predict_proba(pooled_x)
    binned = np.minimum((probabilities[:, 1] * BINS).astype(np.int64), BINS - 1)
    assert evaluated.pooled is not None
    assert evaluated.pooled["rows"] == len(pooled_y)
    assert evaluated.pooled["confusion"] == confusion_matrix(pooled_y, probabilities.argmax(axis=1)).tolist()
    assert evaluated.pooled["auc"] == pytest.approx(roc_auc_score(pooled_y, binned), rel=1e-12)
    assert all(entry["held_out"] for entry in evaluated.nodes.values())
    records = [json.loads(line) for line in (deployment.tmp / "sq-audit.jsonl").read_text().splitlines()]
    scoring = [r for r in records if r.get("kind") == "score"]
    assert len(scoring) == 2 and scoring[0]["table"] == pg_predictions and scoring[0]["model"] == "churn/1"


def test_a_node_that_does_not_allow_scoring_refuses_and_writes_nothing(deployment: Deployment, tmp_path: Path) -> None:
    x, y = rows(40, seed=22)
    url = sqlite_table(tmp_path / "shop.db", x, y)
    with open_store(deployment.store_url) as store:
        register(store, softmax_package())
    deployment.register("closed")
    deployment.start_coordinator()
    deployment.start_node("closed", dataset_toml("customers", url, "SELECT * FROM customers"))
    deployment.wait_for_nodes(1)
    with deployment.client() as client:
        answer = client.score_remote("churn", dataset="customers", write="scores", keys=["id"], timeout=60)
    assert not answer.nodes["closed"]["ok"] and "[scoring] allow is false" in answer.nodes["closed"]["error"]
    assert _count(url, "SELECT name FROM sqlite_master WHERE type = 'table'") == [("customers",)]


def test_a_node_killed_while_scoring_resumes_its_job_without_duplicates(deployment: Deployment, tmp_path: Path) -> None:
    rows_total = 60_000
    x, y = rows(rows_total, seed=23)
    path = tmp_path / "big.db"
    url = sqlite_table(path, x, y)
    with open_store(deployment.store_url) as store:
        register(store, softmax_package())
    deployment.register("big")
    deployment.start_coordinator()
    config = "[scoring]\nallow = true\nchunk_rows = 200\n" + dataset_toml("customers", url, "SELECT * FROM customers")
    deployment.start_node("big", config)
    deployment.wait_for_nodes(1)

    def ask(results: list[object]) -> None:
        with deployment.client() as client:
            results.append(client.score_remote("churn", dataset="customers", write="scores", keys=["id"], timeout=20))

    first: list[object] = []
    asking = threading.Thread(target=ask, args=(first,))
    asking.start()
    deployment.wait_until(lambda: _count(url, "SELECT COUNT(*) FROM scores")[0][0] > 0, "a first chunk", timeout=30)
    deployment.kill(deployment.nodes["big"])  # SIGKILL, mid-job
    asking.join(timeout=60)
    [killed] = first
    assert not killed.nodes["big"]["ok"]  # type: ignore[attr-defined]

    deployment.start_node("big", config)
    deployment.wait_for_nodes(1)
    with deployment.client() as client:
        resumed = client.score_remote("churn", dataset="customers", write="scores", keys=["id"], timeout=60)
    entry = resumed.nodes["big"]
    assert entry["ok"], entry["error"]
    assert entry["rows_skipped"] > 0 and entry["rows_scored"] + entry["rows_skipped"] == rows_total
    written = _count(url, "SELECT COUNT(*), COUNT(DISTINCT id) FROM scores")
    assert written == [(rows_total, rows_total)]
