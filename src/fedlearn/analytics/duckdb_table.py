"""A Parquet or CSV file as an analytics table whose summaries DuckDB computes (the ``duckdb`` extra).

DuckDB reads the file where it lies, in its own vectorised engine, and runs the same aggregate
statements as a SQL database (:mod:`.pushdown`); only their results reach fedlearn, so a summary of
a file of any size costs the node the memory of a few aggregates. Tasks that need rows (a Newton
step, a differentially private release) stream them in bounded chunks.

Each use opens a fresh in-memory DuckDB connection in which the file is a view, ``fedlearn_data``;
statements are SQLAlchemy expressions compiled for PostgreSQL, whose identifier quoting DuckDB
shares, with every value a bound parameter.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.dialects import postgresql

from fedlearn.analytics.pushdown import Runner, fetch_bounded
from fedlearn.analytics.sources import DEFAULT_CHUNK_ROWS, check_columns
from fedlearn.analytics.sql_pushdown import exposed_columns
from fedlearn.core.errors import ConfigError

_VIEW = "fedlearn_data"
_DIALECT = postgresql.dialect(paramstyle="numeric_dollar")
_INT = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
_FLOAT = ("FLOAT", "REAL", "DOUBLE", "DECIMAL")


def _type(name: str) -> str:
    base = name.split("(", maxsplit=1)[0].strip().upper()
    return "int" if base in _INT else "float" if base in _FLOAT else "bool" if base == "BOOLEAN" else "str"


class DuckDBTable:
    """The rows of a Parquet or CSV file (``format`` defaults to the file's suffix), kept in the file.

    ``features`` and ``target`` choose and name columns as :class:`~fedlearn.analytics.SqlPushdownTable`'s do.
    A CSV file's ``delimiter`` is DuckDB's guess unless given (a NODE.toml CSV dataset gives its own).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        format: Literal["parquet", "csv"] | None = None,
        features: Sequence[str] | None = None,
        target: str | None = None,
        delimiter: str | None = None,
        pushdown: bool = True,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"data file {str(self.path)!r} does not exist")
        kind = format or self.path.suffix.lstrip(".").lower()
        if kind not in ("parquet", "csv"):
            raise ConfigError(f"`format` must be 'parquet' or 'csv'; got {kind!r} (from {self.path.name!r})")
        self._format = kind
        self._delimiter = delimiter
        self._features, self._target = (None if features is None else list(features)), target
        self.pushdown = pushdown
        self._schema: tuple[tuple[int, int], dict[str, str]] | None = None

    def __repr__(self) -> str:
        return f"DuckDBTable({str(self.path)!r})"

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        try:
            import duckdb
        except ImportError:
            raise ConfigError("DuckDB is not installed; install fedlearn's `duckdb` extra") from None
        conn = duckdb.connect(":memory:")
        try:
            if self._format == "parquet":
                conn.read_parquet(str(self.path)).create_view(_VIEW)
            else:
                conn.read_csv(str(self.path), delimiter=self._delimiter).create_view(_VIEW)
            yield conn
        except duckdb.Error as exc:
            raise ConfigError(f"cannot read {str(self.path)!r}: {str(exc).splitlines()[0]}") from None
        finally:
            conn.close()

    def _types(self) -> dict[str, str]:
        """Column types as DuckDB reads them, kept until the file changes (opening DuckDB costs ~0.1 s)."""
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise ConfigError(f"cannot read {str(self.path)!r}: {exc.strerror}") from None
        version = (stat.st_mtime_ns, stat.st_size)
        if self._schema is None or self._schema[0] != version:
            with self._connection() as conn:
                described = conn.execute(f"DESCRIBE {_VIEW}").fetchall()
            self._schema = (version, {str(row[0]): _type(str(row[1])) for row in described})
        return dict(self._schema[1])

    def schema(self) -> Mapping[str, str]:
        types = self._types()
        return {name: types[column] for name, column in self._exposed(types).items()}

    def _exposed(self, types: Mapping[str, str]) -> dict[str, str]:
        return exposed_columns(types, self._features, self._target, where=repr(self))

    def relation(self) -> sa.FromClause:
        types = self._types()
        view = sa.table(_VIEW, *(sa.column(name) for name in types))
        exposed = self._exposed(types)
        return sa.select(*(view.c[column].label(name) for name, column in exposed.items())).subquery("fedlearn_data")

    @staticmethod
    def _execute(conn: Any, statement: sa.Select[Any]) -> Any:
        compiled = statement.compile(dialect=_DIALECT)
        params = compiled.params  # built afresh at each access
        return conn.execute(str(compiled), [params[name] for name in compiled.positiontup or ()])

    @contextmanager
    def snapshot(self) -> Iterator[Runner]:
        with self._connection() as conn:

            def run(statement: sa.Select[Any], max_rows: int) -> list[tuple[Any, ...]]:
                cursor = self._execute(conn, statement)
                return fetch_bounded(iter(cursor.fetchone, None), max_rows)

            yield run

    def chunks(self, columns: Sequence[str], chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[NDArray[np.float64]]:
        """The rows of ``columns`` read from the file ``chunk_rows`` at a time, as float64."""
        check_columns(self.schema(), columns, repr(self))
        relation = self.relation()
        with self._connection() as conn:
            cursor = self._execute(conn, sa.select(*(relation.c[name] for name in columns)))
            while part := cursor.fetchmany(chunk_rows):
                yield np.array(part, dtype=np.float64).reshape(len(part), len(columns))
