"""Hostile or mistaken scoring requests: each is refused with its reason, and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedlearn.core.messages import MODEL_PACKAGE_KEY, SCORE, Task
from fedlearn.core.params import ParamSet
from fedlearn.data.schema import InputSchema
from tests.registry.federated.models import rows, softmax_package
from tests.registry.federated.node import dataset_toml, evaluate, node, score, sqlite_table, tables

ALLOW = "[scoring]\nallow = true\n"
QUERY = "SELECT * FROM customers"


@pytest.fixture
def database(tmp_path: Path) -> tuple[Path, str]:
    x, y = rows(60, seed=4)
    path = tmp_path / "node.db"
    return path, sqlite_table(path, x, y)


def _refused(reply: object, match: str) -> None:
    assert not reply.ok  # type: ignore[attr-defined]
    assert match in reply.error, reply.error  # type: ignore[attr-defined]


def test_a_node_whose_policy_does_not_allow_scoring_refuses_it(tmp_path, database) -> None:
    path, url = database
    reply = score(node(tmp_path, dataset_toml("customers", url, QUERY)), softmax_package())
    _refused(reply, "[scoring] allow is false")
    assert tables(path) == {"customers"}


def test_a_table_name_that_is_sql_injection_is_refused(tmp_path, database) -> None:
    path, url = database
    app = node(tmp_path, ALLOW + dataset_toml("customers", url, QUERY))
    _refused(score(app, softmax_package(), write="scores; DROP TABLE customers"), "`write table` must be letters")
    _refused(score(app, softmax_package(), keys=("id) OR 1=1 --",)), "`keys` must be letters")
    assert tables(path) == {"customers"}


def test_a_data_table_of_the_node_is_never_overwritten(tmp_path, database) -> None:
    path, url = database
    app = node(tmp_path, ALLOW + dataset_toml("customers", url, QUERY))
    _refused(score(app, softmax_package(), write="customers"), "does not fit these predictions")
    assert len(node_rows(path)) == 60


def test_a_table_outside_the_nodes_list_is_refused(tmp_path, database) -> None:
    path, url = database
    app = node(tmp_path, ALLOW + 'tables = ["churn_scores"]\n' + dataset_toml("customers", url, QUERY))
    _refused(score(app, softmax_package(), write="scores"), "[scoring] tables")
    assert tables(path) == {"customers"}


def test_a_package_whose_schema_does_not_fit_the_dataset_is_refused(tmp_path, database) -> None:
    path, url = database
    app = node(tmp_path, ALLOW + dataset_toml("customers", url, QUERY))
    wrong = softmax_package(schema=InputSchema.numeric(("age", "income", "tenure")))
    _refused(score(app, wrong), "has no column(s) ['age'")
    _refused(evaluate(app, wrong), "has no column 'age'")
    assert tables(path) == {"customers"}


def test_a_package_naming_user_code_is_refused_without_importing_it(tmp_path, database) -> None:
    path, url = database
    app = node(tmp_path, ALLOW + dataset_toml("customers", url, QUERY))
    package = softmax_package()
    description = {**package.description(), "model": "tests.registry.user_learner:planted"}
    config = {MODEL_PACKAGE_KEY: json.dumps(description), "dataset": "customers", "write": "scores", "keys": '["id"]'}
    reply = app.handle(Task(kind=SCORE, round=0, params=package.params, config=config))
    _refused(reply, "never code a coordinator names")
    assert tables(path) == {"customers"}


def test_a_package_with_arrays_that_do_not_fit_its_learner_is_refused(tmp_path, database) -> None:
    path, url = database
    app = node(tmp_path, ALLOW + dataset_toml("customers", url, QUERY))
    package = softmax_package()
    params = ParamSet({"weight": np.zeros((3, 7), np.float32), "bias": np.zeros(7, np.float32)})
    config = {MODEL_PACKAGE_KEY: json.dumps(package.description()), "dataset": "customers", "write": "scores",
              "keys": '["id"]'}  # fmt: skip
    _refused(app.handle(Task(kind=SCORE, round=0, params=params, config=config)), "do not match learner")
    assert tables(path) == {"customers"}


def test_a_package_over_the_nodes_size_limit_is_refused_before_it_is_read(tmp_path, database) -> None:
    path, url = database
    app = node(tmp_path, ALLOW + "max_package_bytes = 1000\n" + dataset_toml("customers", url, QUERY))
    big = softmax_package(schema=InputSchema.numeric(tuple(f"c{i}" for i in range(300))))
    _refused(score(app, big), "at most 1000")
    assert tables(path) == {"customers"}


def test_a_description_of_endless_nesting_is_refused(tmp_path, database) -> None:
    _, url = database
    app = node(tmp_path, ALLOW + dataset_toml("customers", url, QUERY))
    config = {MODEL_PACKAGE_KEY: "[" * 200_000, "dataset": "customers", "write": "scores", "keys": '["id"]'}
    reply = app.handle(Task(kind=SCORE, round=0, config=config))
    _refused(reply, "not valid JSON")


def test_an_evaluation_below_min_rows_is_refused(tmp_path, database) -> None:
    _, url = database
    app = node(tmp_path, "[policy]\nmin_rows = 100\n" + dataset_toml("customers", url, QUERY))
    _refused(evaluate(app, softmax_package()), "fewer than 100 rows")


def test_an_evaluation_asking_more_bins_than_the_policy_allows_is_refused(tmp_path, database) -> None:
    _, url = database
    app = node(tmp_path, "[policy]\nmax_bins = 10\n" + dataset_toml("customers", url, QUERY))
    _refused(evaluate(app, softmax_package(), bins=11), "max_bins")


def test_a_column_the_policy_withholds_is_refused_as_absent(tmp_path, database) -> None:
    path, url = database
    toml = ALLOW + '[policy]\ncolumns = ["f0", "f1", "y"]\n' + dataset_toml("customers", url, QUERY)
    app = node(tmp_path, toml)
    _refused(score(app, softmax_package()), "column 'f2' is not available")
    _refused(evaluate(app, softmax_package()), "column 'f2' is not available")
    assert tables(path) == {"customers"}


def node_rows(path: Path) -> list[tuple[object, ...]]:
    import sqlite3

    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT * FROM customers").fetchall()
