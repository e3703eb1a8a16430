"""The node's scoring and evaluation handlers, without a network: what lands in its database, what leaves it."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from fedlearn.data.split import hold_out
from fedlearn.registry.federated_metrics import EvaluationSums
from fedlearn.registry.predictors import load_package
from fedlearn.runtime.node_config import load_node_config
from tests.registry.federated.models import FEATURES, linear_package, rows, softmax_package, write_csv
from tests.registry.federated.node import dataset_toml, evaluate, node, score, sqlite_table, table_rows

ALLOW = "[scoring]\nallow = true\n"


@pytest.fixture
def database(tmp_path: Path) -> tuple[Path, str]:
    x, y = rows(120, seed=1)
    path = tmp_path / "node.db"
    return path, sqlite_table(path, x, y)


def test_scoring_writes_one_row_per_key_with_the_version_and_replies_counts_only(tmp_path, database) -> None:
    path, url = database
    app = node(tmp_path, ALLOW + dataset_toml("customers", url, "SELECT * FROM customers"))
    package = softmax_package()
    reply = score(app, package)
    assert reply.ok, reply.error
    written = table_rows(path)
    x, _ = rows(120, seed=1)
    expected = load_package(package).predict(x)
    assert [r[0] for r in written] == list(range(120))
    assert [int(r[1]) for r in written] == expected.tolist()
    assert {r[2] for r in written} == {"churn/1"}
    assert reply.metrics["rows_scored"] == 120 and reply.metrics["rows_skipped"] == 0
    assert not reply.params and not reply.extras
    assert sum(v for k, v in reply.metrics.items() if k.startswith("predicted/")) == 120


def test_scoring_again_updates_rows_without_duplicates(tmp_path, database) -> None:
    path, url = database
    app = node(tmp_path, ALLOW + dataset_toml("customers", url, "SELECT * FROM customers"))
    score(app, softmax_package(seed=0))
    newer = replace(softmax_package(seed=5), version=2)
    reply = score(app, newer)
    assert reply.ok, reply.error
    written = table_rows(path)
    assert len(written) == 120 and {r[2] for r in written} == {"churn/2"}


def test_regression_scoring_releases_the_mean_prediction(tmp_path, database) -> None:
    path, url = database
    app = node(tmp_path, ALLOW + dataset_toml("customers", url, "SELECT * FROM customers", task="regression"))
    reply = score(app, linear_package())
    assert reply.ok, reply.error
    values = [r[1] for r in table_rows(path)]
    assert reply.metrics["prediction_mean"] == pytest.approx(np.mean(values), rel=1e-6)


def _csv_node(tmp_path: Path, data: Path, out: Path, *, load: bool = True) -> object:
    toml = f"""[scoring]
allow = true
write_url = "sqlite:///{out}"
[datasets.customers]
source = "csv"
path = "{data}"
target = "label"
features = {list(FEATURES)!r}
n_classes = 2
""".replace("'", '"')
    return node(tmp_path, toml, load=load)


def test_a_csv_dataset_is_scored_into_the_nodes_write_url(tmp_path) -> None:
    x, y = rows(30, seed=2)
    data = write_csv(tmp_path / "rows.csv", x, y)
    out = tmp_path / "out.db"
    reply = score(_csv_node(tmp_path, data, out), softmax_package())
    assert reply.ok, reply.error
    assert reply.metrics["rows_scored"] == 30 and [r[0] for r in table_rows(out)] == list(range(30))


def test_a_csv_value_that_is_not_a_number_fails_the_task_with_its_reason(tmp_path) -> None:
    x, y = rows(30, seed=2)
    data = write_csv(tmp_path / "rows.csv", x, y)
    lines = data.read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[1], "oops", 1)  # a text value in f0
    data.write_text("\n".join(lines) + "\n")
    reply = score(_csv_node(tmp_path, data, tmp_path / "out.db", load=False), softmax_package())
    assert not reply.ok and "'oops'" in reply.error, reply.error


def test_small_predicted_classes_are_suppressed_under_min_rows(tmp_path, database) -> None:
    _, url = database
    app = node(
        tmp_path, ALLOW + "[policy]\nmin_rows = 1000\n" + dataset_toml("customers", url, "SELECT * FROM customers")
    )
    reply = score(app, softmax_package())
    assert reply.ok, reply.error
    assert not any(k.startswith("predicted/") for k in reply.metrics)
    assert reply.metrics["suppressed"] >= 1


def test_evaluation_uses_the_held_out_rows_and_replies_their_sums(tmp_path, database) -> None:
    _, url = database
    toml = '[node]\ndataset = "customers"\nholdout_fraction = 0.25\nholdout_seed = 3\n' + dataset_toml(
        "customers", url, "SELECT * FROM customers"
    )
    app = node(tmp_path, toml)
    package = softmax_package()
    reply = evaluate(app, package, bins=50)
    assert reply.ok, reply.error
    sums = EvaluationSums.from_params(reply.params, task="classification", n_classes=2, bins=50)
    config = load_node_config(tmp_path / "NODE.toml")
    _, held = hold_out(config.load_datasets()["customers"], 0.25, 3)
    predicted = load_package(package).predict_proba(held.x).argmax(axis=1)
    assert sums.confusion.tolist() == confusion_matrix(held.y, predicted, labels=[0, 1]).tolist()
    assert reply.metrics["heldout"] == 1.0 and reply.num_examples == len(held)


def test_many_chunks_write_back_into_the_same_sqlite_file_they_are_read_from(tmp_path, database) -> None:
    path, url = database
    app = node(tmp_path, ALLOW + "chunk_rows = 7\n" + dataset_toml("customers", url, "SELECT * FROM customers"))
    reply = score(app, softmax_package())
    assert reply.ok, reply.error
    assert [r[0] for r in table_rows(path)] == list(range(120))


def test_a_row_without_a_key_fails_the_task_and_keeps_the_chunks_before_it(tmp_path, database) -> None:
    path, url = database
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE loose AS SELECT CASE WHEN id = 100 THEN NULL ELSE id END AS id, f0, f1, f2, "
                     "label FROM customers")  # fmt: skip
    app = node(tmp_path, ALLOW + "chunk_rows = 7\n" + dataset_toml("customers", url, "SELECT * FROM loose"))
    reply = score(app, softmax_package())
    assert not reply.ok and "missing value" in reply.error, reply.error


def test_a_key_repeated_across_a_chunk_boundary_fails_the_task(tmp_path, database) -> None:
    path, url = database
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE twice AS SELECT id, f0, f1, f2, label FROM customers "
                     "UNION ALL SELECT 6, f0, f1, f2, label FROM customers WHERE id = 6")  # fmt: skip
    app = node(tmp_path, ALLOW + "chunk_rows = 7\n" + dataset_toml("customers", url, "SELECT * FROM twice"))
    reply = score(app, softmax_package())
    assert not reply.ok and "holds the key 6 more than once" in reply.error, reply.error
