"""Analytics over every connector: DataFrames, Parquet and SQL tables summarise in chunks like in-memory arrays."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LinearRegression

from fedlearn.analytics import (
    AnalyticsJob,
    ArrayTable,
    FederatedLinearRegression,
    FrameTable,
    ParquetTable,
    SqlTable,
    SummarySpec,
    accumulate,
)
from fedlearn.core import ConfigError
from tests.analytics.conftest import OPEN, assert_close
from tests.sql_tables import scratch_table

SPEC = SummarySpec(columns=("a", "b"), target="y")
DATABASES = {
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}


def _columns(rows: int = 300, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=rows), rng.normal(size=rows)
    return {"a": a, "b": b, "y": 3 * a - b + rng.normal(scale=0.1, size=rows)}


def _reference() -> np.ndarray:
    return accumulate(ArrayTable(_columns()), SPEC).moments.mean


def test_pandas_and_polars_frames_summarise_like_arrays() -> None:
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    frame = pd.DataFrame(_columns())

    assert_close(accumulate(frame, SPEC).moments.mean, _reference())
    assert_close(accumulate(pl.from_pandas(frame), SPEC, chunk_rows=7).moments.mean, _reference())


def test_parquet_table_reports_its_schema_and_streams_bounded_chunks(tmp_path: Path) -> None:
    pq.write_table(pa.table({**_columns(), "name": ["x"] * 300, "n": np.arange(300)}), tmp_path / "d.parquet")
    table = ParquetTable(tmp_path / "d.parquet")

    chunks = list(table.chunks(["a", "b", "y"], chunk_rows=64))

    assert table.schema() == {"a": "float", "b": "float", "y": "float", "name": "str", "n": "int"}
    assert max(len(c) for c in chunks) <= 64
    assert_close(accumulate(table, SPEC).moments.mean, _reference())


def test_a_text_column_of_a_frame_cannot_be_summarised() -> None:
    table = FrameTable(pa.table({"a": [1.0, 2.0], "b": ["x", "y"]}))

    with pytest.raises(ConfigError, match="column 'b' is text"):
        accumulate(table, SummarySpec(columns=("a", "b")))


def test_a_null_in_a_parquet_column_is_refused_by_name(tmp_path: Path) -> None:
    pq.write_table(pa.table({"a": [1.0, None, 3.0], "b": [True, None, False]}), tmp_path / "n.parquet")

    with pytest.raises(ConfigError, match="column 'b' holds NaN"):
        accumulate(ParquetTable(tmp_path / "n.parquet"), SummarySpec(columns=("b",)))


@pytest.fixture(params=sorted(DATABASES))
def sql_table(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    url = DATABASES[request.param]
    rows = [(float(a), float(b), float(y)) for a, b, y in zip(*_columns().values(), strict=True)]
    with scratch_table(url, "summary", "a double precision, b double precision, y double precision", rows) as name:
        yield url, name


def test_sql_table_summarises_in_chunks_like_arrays(sql_table: tuple[str, str]) -> None:
    url, name = sql_table
    table = SqlTable(url, table=name)

    assert table.schema() == {"a": "float", "b": "float", "y": "float"}
    assert_close(accumulate(table, SPEC, chunk_rows=50).moments.mean, _reference())


def test_a_federation_of_frame_parquet_and_sql_nodes_fits_the_pooled_model(
    tmp_path: Path, sql_table: tuple[str, str]
) -> None:
    pd = pytest.importorskip("pandas")
    url, name = sql_table
    columns = _columns()
    frame = pd.DataFrame(columns)
    pq.write_table(pa.table(columns), tmp_path / "d.parquet")
    job = AnalyticsJob(columns=("a", "b"), target="y")

    job.join("frame", frame, policy=OPEN)
    job.join("parquet", ParquetTable(tmp_path / "d.parquet"), policy=OPEN)
    job.join("sql", SqlTable(url, f"SELECT a, b, y FROM {name}"), policy=OPEN)
    model = job.fit(FederatedLinearRegression())

    x = np.tile(np.column_stack([columns["a"], columns["b"]]), (3, 1))
    assert_close(model.coef_, LinearRegression().fit(x, np.tile(columns["y"], 3)).coef_)


def test_estimators_fit_dataframes_and_series_taking_their_feature_names() -> None:
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    columns = _columns()
    frame, target = pd.DataFrame({"a": columns["a"], "b": columns["b"]}), pd.Series(columns["y"], name="y")

    from_pandas = FederatedLinearRegression().fit(frame, target)
    from_polars = FederatedLinearRegression().fit(pl.from_pandas(frame), pl.from_pandas(target))

    assert list(from_pandas.feature_names_in_) == list(from_polars.feature_names_in_) == ["a", "b"]
    assert_close(from_pandas.coef_, from_polars.coef_)
    assert_close(from_polars.predict(pl.from_pandas(frame)), from_pandas.predict(frame))


def test_any_data_reader_is_a_table(tmp_path: Path) -> None:
    from fedlearn.analytics.sources import as_table
    from fedlearn.data import open_reader

    pq.write_table(pa.table(_columns()), tmp_path / "d.parquet")

    assert_close(accumulate(as_table(open_reader(tmp_path / "d.parquet")), SPEC).moments.mean, _reference())


def test_csv_table_reads_a_fraction_after_the_first_block_of_an_int_column(tmp_path: Path) -> None:
    from fedlearn.analytics import CsvTable
    from fedlearn.data.arrow_reader import CSV_BLOCK_BYTES

    rows = CSV_BLOCK_BYTES // 2 + 1000  # two bytes a row: the fraction is past the first block
    (tmp_path / "n.csv").write_text("a\n" + "".join(f"{i % 10}\n" for i in range(rows)) + "2.5\n")
    table = CsvTable(tmp_path / "n.csv")

    assert table.schema() == {"a": "int"}
    assert accumulate(table, SummarySpec(columns=("a",))).count == rows + 1
