"""Any database SQLAlchemy reaches, read as a query's result in batches.

The query runs inside the data's own database and its rows stream through a server-side cursor
(``stream_results``), one batch of ``batch_rows`` at a time, so the node never holds a second copy
of the table. Plain URLs get the drivers fedlearn installs: ``postgresql://`` uses psycopg 3,
``mysql://`` and ``mariadb://`` use PyMySQL.

A query result has no schema to read without running it, so :meth:`SqlReader.types` runs the query
wrapped in ``LIMIT`` (or the database's own words for it) and looks at the first :data:`SAMPLE_ROWS`
rows: a column is text if any sampled value is text, and a number otherwise. A later value that
disagrees is reported in the batch that holds it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from fedlearn.core.errors import ConfigError
from fedlearn.data.columns import RawType

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.sql.expression import Executable

SAMPLE_ROWS = 1000
"""Rows of a query looked at to tell its columns' types."""

_NUMBERS = (bool, int, float, Decimal, np.number, np.bool_)


class SqlReader:
    """The result of ``query``, or all of ``table``, in the database at ``url`` (any SQLAlchemy URL)."""

    def __init__(self, url: str, query: str | None = None, *, table: str | None = None) -> None:
        if (query is None) == (table is None):
            raise ConfigError("an SQL source needs exactly one of `query` and `table`")
        self.url = url
        self.safe_url = hide_password(url)
        self._table = table
        self._query = query
        self.where = f"query on {self.safe_url}" if table is None else f"table {table!r} on {self.safe_url}"

    def __repr__(self) -> str:
        return f"SqlReader({self.where!r})"

    @property
    def query(self) -> str:
        """The query that is run: the given one, or ``SELECT *`` from the table with its name quoted."""
        if self._query is not None:
            return self._query.strip().rstrip(";")
        from sqlalchemy.engine import make_url

        preparer = make_url(driver_url(self.url)).get_dialect()().identifier_preparer
        return "SELECT * FROM " + ".".join(preparer.quote(part) for part in str(self._table).split("."))

    def types(self) -> Mapping[str, RawType]:
        from sqlalchemy import literal_column, select, text

        sample: Executable = (
            select(literal_column("*")).select_from(text(f"({self.query}) AS fedlearn_sample")).limit(SAMPLE_ROWS)
        )
        parts = list(self._partitions(sample))  # LIMIT, TOP or FETCH FIRST, as the database speaks
        header, rows = parts[0][0], [row for _, part in parts for row in part]
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in header]
        return {name: _raw_type(values) for name, values in zip(header, columns, strict=True)}

    def batches(self, columns: Sequence[str], batch_rows: int) -> Iterator[Mapping[str, NDArray[Any]]]:
        header: list[str] | None = None
        picks: list[int] = []
        for names, rows in self._partitions(self.query, batch_rows):
            if header is None:
                header = names
                missing = [name for name in columns if name not in header]
                if missing:
                    raise ConfigError(f"{self.where} has no column(s) {missing}; its columns are {header}")
                picks = [header.index(name) for name in columns]
            if rows:
                values = list(zip(*rows, strict=True))
                yield {name: column_array(values[i]) for name, i in zip(columns, picks, strict=True)}

    def _partitions(
        self, query: str | Executable, size: int = SAMPLE_ROWS
    ) -> Iterator[tuple[list[str], Sequence[Sequence[Any]]]]:
        """The column names and each partition of rows; the first partition is yielded even when empty."""
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        engine = self._engine()
        try:
            with engine.connect() as conn:
                statement = text(query) if isinstance(query, str) else query
                result = conn.execution_options(stream_results=True, max_row_buffer=size).execute(statement)
                header = [str(name) for name in result.keys()]  # noqa: SIM118  (a Result, not a dict)
                empty = True
                for part in result.partitions(size):
                    empty = False
                    yield header, part
                if empty:
                    yield header, []
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise ConfigError(f"cannot read data from {self.safe_url}: {reason}") from None
        finally:
            engine.dispose()

    def _engine(self) -> Engine:
        from sqlalchemy import create_engine
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return create_engine(driver_url(self.url))
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise ConfigError(f"invalid database URL {self.safe_url}: {exc}") from None


def _raw_type(values: Sequence[Any]) -> RawType:
    present = [value for value in values if value is not None]
    if any(isinstance(value, str) for value in present):
        return "str"
    if not all(isinstance(value, _NUMBERS) for value in present):
        return "other"
    if present and all(isinstance(value, bool | np.bool_) for value in present):
        return "bool"
    if present and all(isinstance(value, int | np.integer) and not isinstance(value, bool) for value in present):
        return "int"
    return "float"


def column_array(values: Sequence[Any]) -> NDArray[Any]:
    """One column of rows as NumPy: integers as int64, other numbers as float64 (NULL as NaN), the rest as objects.

    Anything that is not a number stays as it is, for the encoder to report with its row.
    """
    array = np.array(values)
    if array.dtype.kind in "biuf":
        return array
    if array.dtype.kind == "O" and not any(isinstance(value, str | bytes) for value in values):
        try:  # numbers with NULLs, decimals
            return np.array(values, dtype=np.float64)
        except (TypeError, ValueError):
            pass
    return np.array(values, dtype=object)


def driver_url(url: str) -> str:
    """Plain ``postgresql://`` URLs use psycopg 3, plain ``mysql://`` and ``mariadb://`` PyMySQL."""
    url = re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)
    return re.sub(r"^(mysql|mariadb)://", r"\1+pymysql://", url)


def hide_password(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
