"""A node answers summary tasks from its database's aggregates: the same reply as scanning, no row read.

Against real PostgreSQL and MariaDB (and a NODE.toml pointing at them), under a hostile coordinator.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from fedlearn.analytics import (
    SUMMARIZE,
    DisclosurePolicy,
    DuckDBTable,
    HistogramSpec,
    SqlPushdownTable,
    SummarySpec,
    analytics_handlers,
)
from fedlearn.analytics.node_sources import analytics_data
from fedlearn.client.node_app import NodeApp
from fedlearn.core import ConfigError, ParamSet, Reply, Task
from fedlearn.data.dataset_table import DatasetTable
from fedlearn.data.sql import driver_url
from fedlearn.runtime.node_config import load_node_config

from .databases import POSTGRES_URL, SERVERS, put, storing

ROWS = 120
RNG = np.random.default_rng(5)
DATA = {
    "age": RNG.integers(20, 90, ROWS),
    "income": 5e4 + 1e4 * RNG.standard_normal(ROWS),
    "label": np.arange(ROWS) % 2,
}
SPEC = SummarySpec(
    columns=("age", "income"),
    target="label",
    by_class=True,
    histograms=(HistogramSpec(column="age", low=20.0, high=90.0, bins=7),),
)
POLICY = DisclosurePolicy(min_rows=10, release_extrema=False)
HOSTILE = "x); DROP TABLE t;--"


def _sealed(table: Any) -> Any:
    """``table`` with its rows out of reach: a task that tries to read them fails the test."""

    def chunks(*_: Any, **__: Any) -> Iterator[np.ndarray]:
        raise AssertionError("a row was read out of the database")

    table.chunks = chunks
    return table


def _summarise(table: Any, spec: SummarySpec = SPEC, policy: DisclosurePolicy = POLICY) -> Reply:
    node = NodeApp(node_id="clinic", handlers=analytics_handlers({"main": table}, policy=policy))
    task = Task(kind=SUMMARIZE, round=1, config={"dataset": "main", "spec": spec.to_json()}, params=ParamSet())
    return node.handle(task)


def _rows_of(table: SqlPushdownTable) -> int:
    with table.snapshot() as run:
        return int(run(sa.select(sa.func.count()).select_from(table.relation()), 1)[0][0])


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    yield from storing(request.param, tmp_path, DATA)


def test_a_nodes_reply_from_the_database_equals_its_reply_from_scanning(server: Any) -> None:
    pushed = _summarise(_sealed(server()))
    scanned = _summarise(server(pushdown=False))
    assert pushed.ok and scanned.ok, (pushed.error, scanned.error)
    assert pushed.num_examples == scanned.num_examples == ROWS
    assert sorted(pushed.params) == sorted(scanned.params)
    for name in scanned.params:
        ours, theirs = np.asarray(pushed.params[name]), np.asarray(scanned.params[name])
        finite = np.abs(theirs[np.isfinite(theirs)])
        scale = max(float(finite.max()), 1.0) if finite.size else 1.0
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12 * scale, err_msg=name)
    assert np.isnan(pushed.params["moments/min"]).all()  # the policy still withholds extrema


def test_the_privacy_threshold_applies_to_a_summary_from_the_database(server: Any) -> None:
    reply = _summarise(_sealed(server()), policy=DisclosurePolicy(min_rows=ROWS + 1))
    assert not reply.ok and "fewer than 121 rows" in reply.error


def test_a_hostile_column_name_from_the_coordinator_is_refused_and_the_table_survives(server: Any) -> None:
    table = _sealed(server())
    for policy in (POLICY, DisclosurePolicy(columns=["age", HOSTILE])):
        reply = _summarise(table, SummarySpec(columns=(HOSTILE,)), policy=policy)
        assert not reply.ok and f"column {HOSTILE!r} is not available on this node" in reply.error
    assert _rows_of(table) == ROWS


@pytest.mark.parametrize("name", ['x"`); DROP TABLE t;--', "p:q %(x)s ?"])
def test_a_column_with_a_hostile_name_in_the_database_is_quoted_not_run(server: Any, name: str) -> None:
    columns = {"age": DATA["age"], name: DATA["income"], "label": DATA["label"]}
    spec = SummarySpec(columns=("age", name), target="label")
    pushed, scanned = _summarise(_sealed(server(columns)), spec), _summarise(server(columns, pushdown=False), spec)
    assert pushed.ok, pushed.error
    np.testing.assert_allclose(pushed.params["moments/comoment"], scanned.params["moments/comoment"], rtol=1e-12)


def test_more_bins_than_the_policy_allows_are_refused_before_any_statement(server: Any) -> None:
    spec = SummarySpec(columns=("age",), histograms=(HistogramSpec(column="age", low=0.0, high=1.0, bins=10**6),))
    reply = _summarise(_sealed(server()), spec)
    assert not reply.ok and "refusing 1000000 histogram bins" in reply.error


def test_a_boolean_column_is_scanned_instead(tmp_path: Path) -> None:
    table, drop = put("postgresql", {"flag": np.arange(ROWS) % 3 == 0, "age": DATA["age"]}, tmp_path)
    try:
        reply = _summarise(table, SummarySpec(columns=("flag", "age")))
        assert reply.ok, reply.error
        assert reply.params["moments/mean"][0] == pytest.approx(40 / ROWS)
    finally:
        drop()


@pytest.fixture
def visits(tmp_path: Path) -> Iterator[str]:
    """A uniquely named PostgreSQL table of two visits (age, income, outcome), dropped afterwards."""
    engine = sa.create_engine(driver_url(POSTGRES_URL))
    table = f"node_{tmp_path.name[-8:].replace('-', '_')}_{RNG.integers(1 << 30)}".lower()
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {table} (age float8, income float8, outcome int)")
        conn.exec_driver_sql(f"INSERT INTO {table} VALUES (30, 1e5, 1), (40, 2e5, 0)")
    yield table
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {table}")
    engine.dispose()


def _node_toml(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return load_node_config(path)


def _sql_source(table: str) -> str:
    return f'source = "sql"\nurl = "{POSTGRES_URL}"\ntable = "{table}"\ntarget = "outcome"\ntask = "regression"\n'


def test_node_toml_sql_datasets_stay_in_their_database_unless_pushdown_is_off_or_columns_are_declared(
    tmp_path: Path, visits: str
) -> None:
    source = _sql_source(visits)
    config = _node_toml(
        tmp_path,
        f"[datasets.visits]\n{source}\n[datasets.raw]\n{source}pushdown = false\n"
        f'[datasets.coded]\n{source}\n[datasets.coded.columns]\nage = "int"\n',
    )
    loaded = config.load_datasets(config.trained_datasets())
    data = analytics_data(config, loaded)
    assert list(loaded) == [] and list(data) == ["visits", "raw", "coded"]
    assert isinstance(data["visits"], SqlPushdownTable)
    assert dict(data["visits"].schema()) == {"age": "float", "income": "float", "y": "int"}
    assert isinstance(data["raw"], DatasetTable) and isinstance(data["coded"], DatasetTable)


def test_a_dataset_the_node_trains_on_is_loaded_and_still_summarised_in_its_database(
    tmp_path: Path, visits: str
) -> None:
    config = _node_toml(tmp_path, f'[node]\nlearner = "sklearn.linear"\n[datasets.visits]\n{_sql_source(visits)}')
    loaded = config.load_datasets(config.trained_datasets())
    data = analytics_data(config, loaded)
    assert len(loaded["visits"]) == 2 and isinstance(data["visits"], SqlPushdownTable)
    reply = _summarise(_sealed(data["visits"]), SummarySpec(columns=("age",)), DisclosurePolicy(min_rows=1))
    assert reply.ok and reply.params["moments/mean"][0] == pytest.approx(35.0)


def test_a_pushdown_dataset_naming_a_missing_column_fails_when_the_node_starts(tmp_path: Path, visits: str) -> None:
    config = _node_toml(tmp_path, f'[datasets.visits]\n{_sql_source(visits)}features = ["age", "bmi"]\n')
    with pytest.raises(ConfigError, match=r"dataset 'visits': .*no column\(s\) \['bmi'\]"):
        analytics_data(config, {})


def test_a_pushdown_dataset_with_a_text_feature_fails_when_the_node_starts_naming_it(
    tmp_path: Path, visits: str
) -> None:
    engine = sa.create_engine(driver_url(POSTGRES_URL))
    with engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {visits} ADD COLUMN ward text DEFAULT 'east'")
    engine.dispose()
    config = _node_toml(tmp_path, f"[datasets.visits]\n{_sql_source(visits)}")
    with pytest.raises(ConfigError, match=r"dataset 'visits': column 'ward' is text; declare it as a category"):
        analytics_data(config, {})


def test_a_pushdown_classification_dataset_without_its_class_count_fails_when_the_node_starts(
    tmp_path: Path, visits: str
) -> None:
    source = _sql_source(visits).replace('task = "regression"', 'task = "classification"')
    config = _node_toml(tmp_path, f"[datasets.visits]\n{source}")
    with pytest.raises(ConfigError, match=r"dataset 'visits': classification needs `n_classes` >= 2"):
        analytics_data(config, {})


def test_a_node_toml_csv_dataset_that_opts_in_is_summarised_by_duckdb_with_its_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "labs.csv"
    path.write_text("age;hba1c\n30;5.5\n40;6.5\n50;7.5\n")
    common = f'source = "csv"\npath = "{path}"\ndelimiter = ";"\ntarget = "hba1c"\ntask = "regression"\n'
    config = _node_toml(tmp_path, f"[datasets.labs]\n{common}pushdown = true\n[datasets.raw]\n{common}")
    data = analytics_data(config, {})
    assert isinstance(data["labs"], DuckDBTable) and isinstance(data["raw"], DatasetTable)
    spec, policy = SummarySpec(columns=("age",), target="y"), DisclosurePolicy(min_rows=1)
    pushed, scanned = _summarise(_sealed(data["labs"]), spec, policy), _summarise(data["raw"], spec, policy)
    assert pushed.ok, pushed.error
    np.testing.assert_allclose(pushed.params["moments/mean"], scanned.params["moments/mean"], rtol=1e-6)


def test_a_pushdown_key_that_is_not_a_boolean_is_refused(tmp_path: Path, visits: str) -> None:
    with pytest.raises(ConfigError, match="pushdown"):
        _node_toml(tmp_path, f'[datasets.visits]\n{_sql_source(visits)}pushdown = "yes"\n')


def test_a_dotted_table_name_is_a_schema_and_a_table(visits: str) -> None:
    table = SqlPushdownTable(POSTGRES_URL, table=f"public.{visits}", target="outcome")
    try:
        reply = _summarise(_sealed(table), SummarySpec(columns=("age",)), DisclosurePolicy(min_rows=1))
        assert reply.ok and reply.num_examples == 2
    finally:
        table.close()


def test_the_rescan_of_the_rows_kept_after_a_removal_comes_from_the_database_too(server: Any) -> None:
    kept = {name: values[: ROWS // 2] for name, values in DATA.items()}
    replies = []
    sealed = (_sealed(server()), _sealed(server(kept)))
    for main, rest in (sealed, (server(pushdown=False), server(kept, pushdown=False))):
        node = NodeApp(node_id="clinic", handlers=analytics_handlers({"main": main, "kept": rest}, policy=POLICY))
        config = {"dataset": "main", "remaining": "kept", "spec": SPEC.to_json()}
        replies.append(node.handle(Task(kind=SUMMARIZE, round=1, config=config, params=ParamSet())))
    pushed, scanned = replies
    assert pushed.ok, pushed.error
    remaining = sorted(name for name in scanned.params if name.startswith("remaining/"))
    assert remaining and remaining == sorted(name for name in pushed.params if name.startswith("remaining/"))
    for name in remaining:
        np.testing.assert_allclose(pushed.params[name], scanned.params[name], rtol=1e-10, atol=1e-9, err_msg=name)


def test_the_node_bounds_the_classes_the_database_may_group_into_by_its_max_bins(server: Any) -> None:
    spec = SummarySpec(columns=("age",), target="income", by_class=True)  # a continuous column as the classes
    reply = _summarise(_sealed(server()), spec, policy=DisclosurePolicy(max_bins=50))
    assert not reply.ok and "more than 50 classes" in reply.error


def test_a_query_ending_in_a_semicolon_is_summarised_as_a_subquery(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "d.sqlite") as db:
        db.execute("CREATE TABLE visits (age REAL)")
        db.executemany("INSERT INTO visits VALUES (?)", [(float(a),) for a in DATA["age"]])
    query = SqlPushdownTable(f"sqlite:///{tmp_path / 'd.sqlite'}", query="SELECT age FROM visits WHERE age > 0;\n")
    assert _summarise(_sealed(query), SummarySpec(columns=("age",))).num_examples == ROWS
