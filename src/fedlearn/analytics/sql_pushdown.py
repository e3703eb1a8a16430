"""A SQL query or table as an analytics :class:`~fedlearn.analytics.sources.Table` that stays in its database.

Summaries of it are computed by the database (:mod:`.pushdown`); tasks that need the rows
themselves (a Newton step, a differentially private release) stream them in bounded chunks.
Any SQLAlchemy URL works; plain ``postgresql://`` uses psycopg 3 and ``mysql://`` or ``mariadb://``
use PyMySQL (:func:`fedlearn.data.sql.driver_url`, the connectors' one mapping). Column types come
from the driver's description of the query's result, which holds no row; SQLite, whose columns have
no fixed type, is asked for the storage classes it holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.exc import SQLAlchemyError

from fedlearn.analytics.pushdown import Runner, fetch_bounded
from fedlearn.analytics.sources import DEFAULT_CHUNK_ROWS, check_columns
from fedlearn.core.errors import ConfigError
from fedlearn.data.sql import driver_url, hide_password

# PostgreSQL type OIDs (pg_type) and MySQL/MariaDB field types (FIELD_TYPE) of numeric columns
_POSTGRES = {16: "bool", 20: "int", 21: "int", 23: "int", 700: "float", 701: "float", 1700: "float"}
_MYSQL = {0: "float", 1: "int", 2: "int", 3: "int", 4: "float", 5: "float", 8: "int", 9: "int", 13: "int", 246: "float"}


def exposed_columns(
    types: Mapping[str, str], features: Sequence[str] | None, target: str | None, *, where: str
) -> dict[str, str]:
    """Exposed name -> source column: the features (default: all but the target) and the target as ``y``."""
    if target is not None and target not in types:
        raise ConfigError(f"{where} has no target column {target!r}; its columns are {sorted(types)}")
    chosen = list(features) if features is not None else [c for c in types if c != target]
    missing = [c for c in chosen if c not in types]
    if missing:
        raise ConfigError(f"{where} has no column(s) {missing}; its columns are {sorted(types)}")
    exposed = {c: c for c in chosen}
    if target is not None:
        exposed["y"] = target
    return exposed


class SqlPushdownTable:
    """The rows of ``query`` (or of ``table``) in the database at ``url``.

    ``features`` and ``target`` choose and name columns as a NODE.toml SQL dataset does: the
    features (default: every column but the target) under their own names, and the target under
    the name ``y``, as a loaded ``Dataset``'s. ``pushdown=False`` streams rows into the node for
    every task instead of asking the database for aggregates.
    """

    def __init__(
        self,
        url: str,
        *,
        query: str | None = None,
        table: str | None = None,
        features: Sequence[str] | None = None,
        target: str | None = None,
        pushdown: bool = True,
    ) -> None:
        if (query is None) == (table is None):
            raise ConfigError("a SQL table needs exactly one of `query` and `table`")
        self._where = hide_password(url)
        try:
            self._engine = sa.create_engine(driver_url(url))
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise ConfigError(f"invalid database URL {self._where}: {exc}") from None
        self._query = None if query is None else query.strip().rstrip(";")  # it becomes a subquery
        self._table = table
        self._features, self._target = (None if features is None else list(features)), target
        self.pushdown = pushdown

    def __repr__(self) -> str:
        what = f"query {self._query!r}" if self._query is not None else f"table {self._table!r}"
        return f"SqlPushdownTable({self._where}, {what})"

    def close(self) -> None:
        self._engine.dispose()

    # what the database holds -------------------------------------------------------------------

    def _raw(self) -> sa.Select[Any]:
        """Every column of the source, unnamed: for its description."""
        if self._query is not None:
            return sa.select(sa.literal_column("*")).select_from(sa.text(f"({self._query}) AS fedlearn_query"))
        return sa.select(sa.literal_column("*")).select_from(self._table_clause())

    def _named(self, names: Sequence[str]) -> sa.FromClause:
        """The source with its columns ``names`` addressable (and quoted) by name."""
        columns: list[sa.ColumnClause[Any]] = [sa.column(name) for name in names]
        if self._query is not None:
            return sa.text(self._query).columns(*columns).subquery("fedlearn_query")
        return self._table_clause(*columns)

    def _table_clause(self, *columns: sa.ColumnClause[Any]) -> sa.TableClause:
        """The table, ``schema.table`` quoted part by part as the connectors' ``SqlReader`` quotes it."""
        schema, _, name = str(self._table).rpartition(".")
        return sa.table(name, *columns, schema=schema or None)

    def _source_types(self) -> dict[str, str]:
        """Column name -> type of the query's result, from its description (no row is read)."""
        dialect = self._engine.dialect.name
        with self._errors(), self._engine.connect() as conn:
            result = conn.execute(self._raw().limit(0))
            described: list[tuple[str, Any]] = [(d[0], d[1]) for d in result.cursor.description]
            if dialect == "sqlite":
                return self._sqlite_types(conn, [name for name, _ in described])
        codes: dict[Any, str] = {"postgresql": _POSTGRES, "mysql": _MYSQL, "mariadb": _MYSQL}.get(dialect, {})
        return {str(name): codes.get(code, "str") for name, code in described}

    def _sqlite_types(self, conn: sa.Connection, names: list[str]) -> dict[str, str]:
        raw = self._named(names)
        flags = []
        for name in names:
            kind = sa.func.typeof(raw.c[name])
            flags += [sa.func.max(kind.in_(["text", "blob"])), sa.func.max(kind == "real")]
        row = conn.execute(sa.select(*flags).select_from(raw)).one()
        return {n: "str" if row[2 * i] else "float" if row[2 * i + 1] else "int" for i, n in enumerate(names)}

    def _exposed(self, types: Mapping[str, str]) -> dict[str, str]:
        return exposed_columns(types, self._features, self._target, where=repr(self))

    def schema(self) -> Mapping[str, str]:
        types = self._source_types()
        return {name: types[column] for name, column in self._exposed(types).items()}

    def relation(self) -> sa.FromClause:
        types = self._source_types()
        exposed = self._exposed(types)
        source = self._named(list(types))
        return sa.select(*(source.c[column].label(name) for name, column in exposed.items())).subquery("fedlearn_data")

    # running statements ------------------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise ConfigError(f"cannot read data from {self._where}: {reason}") from None

    @contextmanager
    def snapshot(self) -> Iterator[Runner]:
        options: dict[str, Any] = {}
        if self._engine.dialect.name in ("postgresql", "mysql", "mariadb"):
            options["isolation_level"] = "REPEATABLE READ"
        with self._errors(), self._engine.connect() as conn:
            conn.execution_options(**options)
            with conn.begin():
                if self._engine.dialect.name == "postgresql":
                    # The statements hold hundreds of aggregates: LLVM takes ~25 s to compile them, more than
                    # JIT saves even over 10M rows (BENCHMARKS.md, "Statistics inside the database").
                    conn.exec_driver_sql("SET LOCAL jit = off")
                yield self._runner(conn)

    def _runner(self, conn: sa.Connection) -> Runner:
        def run(statement: sa.Select[Any], max_rows: int) -> list[tuple[Any, ...]]:
            with self._errors():
                return fetch_bounded(conn.execute(statement), max_rows)

        return run

    def chunks(self, columns: Sequence[str], chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[NDArray[np.float64]]:
        """The rows of ``columns`` streamed from the database, ``chunk_rows`` at a time, as float64."""
        check_columns(self.schema(), columns, repr(self))
        relation = self.relation()
        statement = sa.select(*(relation.c[name] for name in columns))
        with self._errors(), self._engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(statement)
            for part in result.partitions(chunk_rows):
                # tuples first: numpy reads a list of SQLAlchemy rows value by value, three times slower
                yield np.array([tuple(row) for row in part], dtype=np.float64).reshape(len(part), len(columns))
