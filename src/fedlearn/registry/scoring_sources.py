"""What a scoring job reads: a SQL query or table, a Parquet file or a CSV file, in chunks of rows.

Each source yields :class:`Chunk` s of at most ``chunk_rows`` rows, holding each row's key and the
columns the model takes, and resumes where a previous run's committed progress ends:

- a SQL source is read in key order, one bounded query per chunk (``WHERE key >= last ORDER BY key
  LIMIT n``). No read transaction stays open while chunks are written, so a SQLite file can be read
  and written by the same job, and PostgreSQL keeps no snapshot alive for the whole job. The next
  chunk, or a resumed run, is the same query from the last key committed: its first row is that
  key itself, dropped, and a second row with that key is a repeated key, refused.
- Parquet and CSV files are read by pyarrow in record batches and resumed by row offset: a Parquet
  file skips whole row groups without reading them, a CSV file reads and drops the rows.

A CSV file's numeric schema columns are parsed as float64 and its category columns as text, so
that a text value deep in the file is reported with its column, not as a type guessed from the
first rows. Key columns keep the type pyarrow infers (int64 or text), so an integer key past 2**53
is written back exactly: this is why files are not read through
:mod:`fedlearn.data.arrow_reader`, whose CSV reader widens every number to float64.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import sqlalchemy as sa

from fedlearn.core.errors import ConfigError, SchemaError
from fedlearn.data.schema import InputSchema
from fedlearn.registry.databases import Database, parse_url, table_name
from fedlearn.registry.write_back import MAX_KEY_CHARS, KeyType, KeyValue, Progress, show_key

if TYPE_CHECKING:
    import pyarrow as pa

CSV_BLOCK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Chunk:
    """Consecutive source rows: their keys, and named columns to encode (extra columns are ignored)."""

    keys: list[tuple[KeyValue, ...]]
    columns: Mapping[str, Any]

    @property
    def rows(self) -> int:
        return len(self.keys)

    def key_types(self) -> tuple[KeyType, ...]:
        return tuple("int" if isinstance(value, int) else "text" for value in self.keys[0])


class ChunkSource(Protocol):
    """Rows in a stable order, from where ``progress`` says the job stopped."""

    description: str
    key_ordered: bool
    """Whether rows come in key order, so that a repeated key is always next to its twin."""

    def chunks(self, progress: Progress, chunk_rows: int) -> Iterator[Chunk]: ...

    def close(self) -> None: ...


def open_source(
    source: str, *, query: str | None, table: str | None, keys: Sequence[str], schema: InputSchema
) -> ChunkSource:
    """The source at ``source``: a SQLAlchemy URL (with ``query`` or ``table``), or a .parquet or .csv path."""
    if "://" in source:
        if (query is None) == (table is None):
            raise ConfigError("a SQL source needs exactly one of `query` and `table`")
        return SqlSource(source, query=query, table=table, keys=keys, schema=schema)
    if query is not None or table is not None:
        raise ConfigError(f"`query` and `table` are for SQL sources; got the file {source!r}")
    path = Path(source).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"`source` must be a database URL or an existing .parquet or .csv file; got {source!r}")
    if path.suffix.lower() in (".parquet", ".pq"):
        return ParquetSource(path, keys=keys, schema=schema)
    if path.suffix.lower() == ".csv":
        return CsvSource(path, keys=keys, schema=schema)
    raise ConfigError(f"`source` file must end in .parquet or .csv; got {path.name!r}")


class SqlSource:
    """A query or table in any database, read in key order one chunk-sized query at a time."""

    key_ordered = True

    def __init__(
        self, url: str, *, query: str | None, table: str | None, keys: Sequence[str], schema: InputSchema
    ) -> None:
        self.db = Database(parse_url(url, what="source"))
        quote = self.db.engine.dialect.identifier_preparer.quote
        if table is not None:
            table_schema, name = table_name(table, what="table")
            inner = ".".join(quote(part) for part in (table_schema, name) if part is not None)
            self.description = f"{self.db.display} table {table}"
            self._inner = f"SELECT * FROM {inner}"
        else:
            assert query is not None
            self._inner = query.strip().rstrip(";")
            self.description = f"{self.db.display} query {self._inner}"
        self.keys = tuple(keys)
        self._needed = tuple(dict.fromkeys((*keys, *schema.names)))
        try:
            self._check_columns()
        except ConfigError:
            self.db.close()
            raise
        self._order = ", ".join(quote(key) for key in keys)
        self._select = ", ".join(quote(name) for name in self._needed)

    def _check_columns(self) -> None:
        with self.db.transaction("run the source query") as conn:
            columns = list(conn.execute(sa.text(f"SELECT * FROM ({self._inner}) AS src WHERE 1 = 0")).keys())
        _check_names(columns, self._needed)

    def chunks(self, progress: Progress, chunk_rows: int) -> Iterator[Chunk]:
        positions = [(self._needed.index(key), key) for key in self.keys]
        last = progress.last_key
        while True:
            rows = self._page(last, chunk_rows)
            if last is not None and rows and _key(rows[0], positions) == last:
                rows = rows[1:]  # the last key committed, itself
                if rows and _key(rows[0], positions) == last:
                    raise ConfigError(
                        f"the source holds the key {show_key(last)} more than once; the key column(s) "
                        f"{list(self.keys)} must identify each row"
                    )
            rows = rows[:chunk_rows]
            if not rows:
                return
            keys = [_key(row, positions) for row in rows]
            columns = {name: [_plain(row[i]) for row in rows] for i, name in enumerate(self._needed)}
            yield Chunk(keys=keys, columns=columns)
            last = keys[-1]

    def _page(self, last: tuple[KeyValue, ...] | None, chunk_rows: int) -> list[Sequence[Any]]:
        """Up to ``chunk_rows`` rows in key order from ``last`` on, itself included (plus one for it)."""
        where, params = "", {}
        if last is not None:
            bounds = ", ".join(f":k{i}" for i in range(len(last)))
            where = f" WHERE {self._order} >= {bounds}" if len(last) == 1 else f" WHERE ({self._order}) >= ({bounds})"
            params = {f"k{i}": value for i, value in enumerate(last)}
        limit = chunk_rows + (1 if last is not None else 0)
        statement = sa.text(
            f"SELECT {self._select} FROM ({self._inner}) AS src{where} ORDER BY {self._order} LIMIT {int(limit)}"
        )
        with self.db.transaction("read the source") as conn:
            return [tuple(row) for row in conn.execute(statement, params)]

    def close(self) -> None:
        self.db.close()


class ParquetSource:
    """A Parquet file read in record batches; resuming skips whole row groups unread."""

    key_ordered = False

    def __init__(self, path: Path, *, keys: Sequence[str], schema: InputSchema) -> None:
        import pyarrow.parquet as pq

        self.description = str(path)
        try:
            self._file = pq.ParquetFile(path)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise ConfigError(f"cannot read {path} as Parquet: {exc}") from None
        self._needed = _check_names(self._file.schema_arrow.names, (*keys, *schema.names))
        self.keys = tuple(keys)

    def chunks(self, progress: Progress, chunk_rows: int) -> Iterator[Chunk]:
        skip, first_group = progress.rows_done, 0
        metadata = self._file.metadata
        while first_group < metadata.num_row_groups and metadata.row_group(first_group).num_rows <= skip:
            skip -= metadata.row_group(first_group).num_rows
            first_group += 1
        groups = list(range(first_group, metadata.num_row_groups))
        if not groups:
            return
        batches = self._file.iter_batches(batch_size=chunk_rows, row_groups=groups, columns=list(self._needed))
        for table in _rechunk(batches, skip, chunk_rows):
            yield _arrow_chunk(table, self.keys, self._needed)

    def close(self) -> None:
        self._file.close()


class CsvSource:
    """A CSV file with a header row, read in blocks; resuming reads and drops the rows already scored."""

    key_ordered = False

    def __init__(self, path: Path, *, keys: Sequence[str], schema: InputSchema) -> None:
        import pyarrow as pa
        from pyarrow import csv

        self.description, self._path = str(path), path
        self._header = self._reader(csv.ConvertOptions()).schema.names
        self._needed = _check_names(self._header, (*keys, *schema.names))
        self.keys = tuple(keys)
        types = {c.name: pa.string() if c.type == "category" else pa.float64() for c in schema.columns}
        types |= {c.name: pa.bool_() for c in schema.columns if c.type == "bool"}
        self._options = csv.ConvertOptions(column_types=types, include_columns=list(self._needed))

    def _reader(self, options: Any) -> Any:
        from pyarrow import csv

        try:
            return csv.open_csv(
                self._path, read_options=csv.ReadOptions(block_size=CSV_BLOCK_BYTES), convert_options=options
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {self._path} as CSV: {_one_line(exc)}") from None

    def chunks(self, progress: Progress, chunk_rows: int) -> Iterator[Chunk]:
        batches = _csv_batches(self._reader(self._options), self._header, self._path)
        for table in _rechunk(batches, progress.rows_done, chunk_rows):
            yield _arrow_chunk(table, self.keys, self._needed)

    def close(self) -> None:
        """Nothing to close: each ``chunks`` call opens its own reader, closed when it is exhausted."""


def _csv_batches(reader: Any, header: Sequence[str], path: Path) -> Iterator[pa.RecordBatch]:
    """The reader's batches; a conversion error names its column and the first row of the failed block."""
    read = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except ValueError as exc:  # ArrowInvalid, such as "In CSV column #2: CSV conversion error ..."
            text = _one_line(exc)
            match = re.search(r"CSV column #(\d+)", text)
            if match is None or int(match.group(1)) >= len(header):
                raise ConfigError(f"cannot read {path} as CSV after row {read}: {text}") from None
            column = header[int(match.group(1))]
            raise SchemaError(f"{path}, rows from {read + 1}: column {column!r}: {text}", column=column) from None
        read += batch.num_rows
        yield batch


def _rechunk(batches: Iterator[pa.RecordBatch], skip: int, chunk_rows: int) -> Iterator[pa.Table]:
    """Tables of exactly ``chunk_rows`` rows (the last may be shorter), after dropping ``skip`` rows."""
    import pyarrow as pa

    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        rows, skip = batch.slice(skip), 0
        pending.append(rows)
        size += rows.num_rows
        while size >= chunk_rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, chunk_rows)
            rest = table.slice(chunk_rows)
            pending, size = rest.to_batches(), rest.num_rows
    if size:
        yield pa.Table.from_batches(pending)


def _arrow_chunk(table: pa.Table, keys: Sequence[str], needed: Sequence[str]) -> Chunk:
    key_columns = [[_key_value(value, key) for value in table.column(key).to_pylist()] for key in keys]
    rows = list(zip(*key_columns, strict=True))
    return Chunk(keys=rows, columns={name: table.column(name).to_numpy(zero_copy_only=False) for name in needed})


def _check_names(columns: Sequence[str], needed: Sequence[str]) -> tuple[str, ...]:
    missing = [column for column in needed if column not in columns]
    if missing:
        raise ConfigError(f"the source has no column(s) {missing}; its columns are {list(columns)}")
    return tuple(dict.fromkeys(needed))


def _key(row: Sequence[Any], positions: Sequence[tuple[int, str]]) -> tuple[KeyValue, ...]:
    return tuple(_key_value(row[index], key) for index, key in positions)


def _key_value(value: Any, column: str) -> KeyValue:
    """A key as an int or a short text; anything else cannot identify a row reliably."""
    if type(value) is int:
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value():
        value = int(value)
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | str):
        what = "a missing value" if value is None else f"{value!r} ({type(value).__name__})"
        raise ConfigError(f"key column {column!r} must hold integers or text; it holds {what}")
    if isinstance(value, str) and len(value) > MAX_KEY_CHARS:
        raise ConfigError(f"key column {column!r} holds a key of {len(value)} characters; at most {MAX_KEY_CHARS}")
    return value


def _plain(value: Any) -> Any:
    """A database value as the encoder takes it: a NUMERIC's Decimal becomes a float."""
    return float(value) if isinstance(value, Decimal) else value


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
