"""SQL sources against the machine's real PostgreSQL and MariaDB: streamed, typed from the query, encoded by schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from fedlearn.core.errors import ConfigError, SchemaError
from fedlearn.data import SqlReader, iter_batches, load_sql
from fedlearn.data.schema import InputSchema
from fedlearn.data.sql import driver_url
from tests.sql_tables import scratch_table

DATABASES = {
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}
COLORS = ["red", "green", "blue"]


@pytest.fixture(params=sorted(DATABASES))
def table(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A table of visits with a text, a numeric(5,2) and an integer column, dropped afterwards."""
    url = DATABASES[request.param]
    columns = "id integer, age integer, color varchar(10), bmi numeric(5, 2), outcome integer"
    rows = [
        (1, 30, "red", 20.5, 1),
        (2, 45, "blue", 31.0, 0),
        (3, 52, "red", 25.25, 1),
        (4, 61, "green", 22.0, 0),
    ]
    with scratch_table(url, "visits", columns, rows) as name:
        yield url, name


def test_query_reads_categories_and_decimals_in_batches(table: tuple[str, str]) -> None:
    url, name = table

    data = load_sql(
        url, f"SELECT age, color, bmi, outcome FROM {name} ORDER BY id", target="outcome",
        columns={"color": COLORS}, n_classes=2, batch_rows=3,
    )  # fmt: skip

    assert data.feature_names == ("age", "color=red", "color=green", "color=blue", "bmi")
    np.testing.assert_allclose(data.x[1], [45, 0, 0, 1, 31.0])
    np.testing.assert_allclose(data.x[:, 4], [20.5, 31.0, 25.25, 22.0])
    np.testing.assert_array_equal(data.y, [1, 0, 1, 0])


def test_a_whole_table_is_read_by_name(table: tuple[str, str]) -> None:
    url, name = table

    data = load_sql(url, table=name, target=None, features=["age", "bmi"])

    assert data.x.shape == (4, 2) and data.name == name


def test_a_query_returning_text_is_refused_at_load_naming_the_column(table: tuple[str, str]) -> None:
    url, name = table

    with pytest.raises(SchemaError, match="column 'color' is text; declare it as a category"):
        load_sql(url, f"SELECT age, color, outcome FROM {name}", target="outcome", n_classes=2)


def test_a_null_is_refused_naming_column_and_row(table: tuple[str, str]) -> None:
    url, name = table

    with pytest.raises(SchemaError, match=r"column 'bmi' holds a missing or infinite value at row 1"):
        load_sql(
            url, f"SELECT age, CASE WHEN id = 2 THEN NULL ELSE bmi END AS bmi FROM {name} ORDER BY id", target=None
        )


def test_iter_batches_streams_keys_and_features(table: tuple[str, str]) -> None:
    url, name = table
    trained = load_sql(
        url, table=name, target="outcome", features=["age", "color"], columns={"color": COLORS}, n_classes=2
    )
    assert trained.schema is not None

    batches = list(
        iter_batches(
            SqlReader(url, f"SELECT * FROM {name} ORDER BY id"), trained.schema, key_columns=["id"], batch_rows=3
        )
    )

    assert [len(b.features) for b in batches] == [3, 1]
    np.testing.assert_array_equal(np.concatenate([b.keys["id"] for b in batches]), [1, 2, 3, 4])
    np.testing.assert_array_equal(np.concatenate([b.features for b in batches]), trained.x)


def test_an_unknown_table_is_a_one_line_error(table: tuple[str, str]) -> None:
    url, _ = table

    with pytest.raises(ConfigError, match="cannot read data from"):
        load_sql(url, table="no_such_table_here", target=None)


def test_a_hostile_table_name_is_quoted_not_run(table: tuple[str, str]) -> None:
    url, name = table

    with pytest.raises(ConfigError, match="cannot read data from"):
        load_sql(url, table=f"{name}; DROP TABLE {name}", target=None)
    assert load_sql(url, table=name, target=None, features=["age"]).x.shape == (4, 1)


def test_query_and_table_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="exactly one of `query` and `table`"):
        SqlReader(DATABASES["postgresql"], "SELECT 1", table="t")


def test_a_large_query_streams_in_memory_bounded_by_a_batch() -> None:
    import tracemalloc

    name = f"big_{uuid.uuid4().hex[:10]}"
    engine = create_engine(driver_url(DATABASES["postgresql"]))
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE {name} AS SELECT g AS id, random() AS a FROM generate_series(1, 50000) AS g"))
    try:
        tracemalloc.start()
        batches = iter_batches(
            SqlReader(DATABASES["postgresql"], table=name), InputSchema.numeric(["a"]), batch_rows=1000
        )
        rows = sum(len(batch.features) for batch in batches)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {name}"))
        engine.dispose()

    assert rows == 50_000
    assert peak < 2_000_000  # the whole result as Python rows takes about 10 MB
