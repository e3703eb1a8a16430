"""Real databases holding the same columns: PostgreSQL, MariaDB, SQLite, and DuckDB over Parquet and CSV.

:func:`put` writes named columns (float64 or int64 arrays, NaN as NULL) into a fresh, uniquely
named table or file and returns the :class:`~fedlearn.analytics.InDatabase` table over it and a
function that drops it; :func:`storing` is the fixture body that drops every table a test made.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray

from fedlearn.analytics import DuckDBTable, SqlPushdownTable

POSTGRES_URL = os.environ.get("FEDLEARN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("FEDLEARN_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/test")
BACKENDS = ("postgresql", "mariadb", "sqlite", "duckdb-parquet", "duckdb-csv")
SERVERS = ("postgresql", "mariadb")

Columns = Mapping[str, NDArray[Any]]


def unique_name() -> str:
    return f"pushdown_{uuid.uuid4().hex[:10]}"


def _sql_type(values: NDArray[Any], dialect: str) -> str:
    if values.dtype.kind in "iu":
        return "BIGINT"
    if values.dtype.kind == "b":
        return "BOOLEAN"
    if values.dtype.kind in "US":
        return "VARCHAR(64)" if dialect != "sqlite" else "TEXT"
    return "DOUBLE PRECISION" if dialect != "sqlite" else "REAL"


def _value(v: Any) -> Any:
    if isinstance(v, float) and np.isnan(v):
        return None
    return v


def _sql(url: str, columns: Columns, **options: Any) -> tuple[SqlPushdownTable, Callable[[], None]]:
    from fedlearn.data.sql import driver_url

    engine = sa.create_engine(driver_url(url))
    table = unique_name()
    preparer = engine.dialect.identifier_preparer
    names = list(columns)
    quoted = [preparer.quote_identifier(n) for n in names]
    with engine.begin() as conn:
        dialect = engine.dialect.name
        spec = ", ".join(f"{q} {_sql_type(columns[n], dialect)}" for q, n in zip(quoted, names, strict=True))
        conn.exec_driver_sql(f"CREATE TABLE {table} ({spec})")
        rows = [tuple(_value(v) for v in row) for row in zip(*(columns[n].tolist() for n in names), strict=True)]
        if rows:
            insert = sa.table(table, *(sa.column(n) for n in names)).insert()
            conn.execute(insert, [dict(zip(names, row, strict=True)) for row in rows])

    def drop() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        engine.dispose()

    return SqlPushdownTable(url, table=table, **options), drop


def _duckdb(directory: Path, columns: Columns, kind: str, **options: Any) -> tuple[DuckDBTable, Callable[[], None]]:
    import duckdb

    path = directory / f"{unique_name()}.{kind}"
    names = list(columns)
    conn = duckdb.connect()
    types = ", ".join(f"c{i} {_sql_type(columns[n], 'duckdb')}" for i, n in enumerate(names))
    conn.execute(f"CREATE TABLE t ({types})")
    rows = [tuple(_value(v) for v in row) for row in zip(*(columns[n].tolist() for n in names), strict=True)]
    if rows:
        conn.executemany(f"INSERT INTO t VALUES ({', '.join('?' for _ in names)})", rows)
    renamed = ", ".join(f'c{i} AS "{n}"' for i, n in enumerate(names))
    fmt = "PARQUET" if kind == "parquet" else "CSV, HEADER"
    conn.execute(f"COPY (SELECT {renamed} FROM t) TO '{path}' (FORMAT {fmt})")
    conn.close()
    return DuckDBTable(path, **options), path.unlink


def put(backend: str, columns: Columns, directory: Path, **options: Any) -> tuple[Any, Callable[[], None]]:
    """``columns`` stored in ``backend``: the table over them, and how to drop them."""
    if backend == "postgresql":
        return _sql(POSTGRES_URL, columns, **options)
    if backend == "mariadb":
        return _sql(MARIADB_URL, columns, **options)
    if backend == "sqlite":
        return _sql(f"sqlite:///{directory / 'data.sqlite'}", columns, **options)
    return _duckdb(directory, columns, backend.removeprefix("duckdb-"), **options)


def storing(backend: str, directory: Path, default: Columns) -> Iterator[Callable[..., Any]]:
    """A fixture's body: ``store(columns=default, **options)`` puts columns in ``backend``; all are dropped after."""
    drops = []

    def store(columns: Columns = default, **options: Any) -> Any:
        table, drop = put(backend, columns, directory, **options)
        drops.append(drop)
        return table

    yield store
    for drop in drops:
        drop()
