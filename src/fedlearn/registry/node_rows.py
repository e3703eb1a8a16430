"""A node's declared dataset read afresh, every column it has, in bounded chunks of named columns.

Scoring needs what a loaded ``Dataset`` drops: the row keys and text (category) columns. So a
scoring task re-reads the dataset's source as its NODE.toml declares it, a chunk at a time, and
hands each chunk on as ``{column: values}`` for :meth:`~fedlearn.data.schema.InputSchema.encode`.
A CSV file's values are text; the columns the model reads as numbers are converted here, an empty
field becoming a missing value the encoder refuses for that row. Built-in datasets have no key
column, so they cannot be scored.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedlearn.core.errors import ConfigError
from fedlearn.data.schema import InputSchema
from fedlearn.data.sources import _driver_url, _hide_password
from fedlearn.runtime.node_config import CsvSource, Source, SqlSource

Chunk = dict[str, NDArray[Any]]


def read_chunks(
    source: Source,
    columns: Sequence[str],
    schema: InputSchema,
    *,
    keys: Sequence[str],
    chunk_rows: int,
    dataset: str,
) -> Iterator[Chunk]:
    """``columns`` (which include the ``keys``) of the dataset, ``chunk_rows`` rows at a time; a column it
    lacks is one clear error. An SQL dataset comes in key order, its rows without a key first."""
    if isinstance(source, SqlSource):
        yield from _sql_chunks(source, columns, keys, chunk_rows=chunk_rows, dataset=dataset)
    elif isinstance(source, CsvSource):
        numeric = {c.name for c in schema.columns if c.type != "category"}
        yield from _csv_chunks(source, columns, numeric, chunk_rows=chunk_rows, dataset=dataset)
    else:
        raise ConfigError(f"dataset {dataset!r} is a built-in dataset; it has no key column, so it cannot be scored")


def _picks(header: Sequence[str], columns: Sequence[str], dataset: str) -> list[int]:
    missing = [c for c in columns if c not in header]
    if missing:
        raise ConfigError(f"dataset {dataset!r} has no column(s) {missing}; its columns are {list(header)}")
    return [list(header).index(c) for c in columns]


def _sql_chunks(
    source: SqlSource, columns: Sequence[str], keys: Sequence[str], *, chunk_rows: int, dataset: str
) -> Iterator[Chunk]:
    """Pages in key order, each its own short statement: no read stays open while the chunk before it is
    written, which SQLite (one writer, and a reader blocks it) needs when predictions go to the same file."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(_driver_url(source.url))
    quote = engine.dialect.identifier_preparer.quote
    inner = f"({source.query.strip().rstrip(';')}) AS fedlearn_rows"
    names, key_names = ", ".join(quote(c) for c in columns), [quote(k) for k in keys]
    present = " AND ".join(f"{k} IS NOT NULL" for k in key_names)
    after = f"({', '.join(key_names)}) >= ({', '.join(f':k{i}' for i in range(len(keys)))})"
    if len(keys) == 1:
        after = f"{key_names[0]} >= :k0"
    order = ", ".join(key_names)
    try:
        with engine.connect() as conn:
            header = list(conn.execute(text(f"SELECT * FROM {inner} LIMIT 0")).keys())
            _picks(header, columns, dataset)
            missing_keys = conn.execute(text(f"SELECT COUNT(*) FROM {inner} WHERE NOT ({present})")).scalar_one()
        if missing_keys:
            yield {name: _column([None] * int(missing_keys)) for name in columns}  # refused rows, counted
        last: tuple[Any, ...] | None = None
        seen = 0  # rows of the last page whose key is ``last``: the next page starts with them again
        positions = [list(columns).index(k) for k in keys]
        while True:
            where = present if last is None else f"{present} AND {after}"
            page = text(f"SELECT {names} FROM {inner} WHERE {where} ORDER BY {order} LIMIT {int(chunk_rows) + seen}")
            bound = {} if last is None else {f"k{i}": value for i, value in enumerate(last)}
            with engine.connect() as conn:
                part = conn.execute(page, bound).fetchall()
            lead = 0
            while lead < len(part) and last is not None and tuple(part[lead][i] for i in positions) == last:
                lead += 1
            if lead > seen:
                raise ConfigError(f"dataset {dataset!r}: rows repeat the key {list(last or ())} of {list(keys)}; "
                                  "each row needs its own key")  # fmt: skip
            fresh = part[lead:]
            if not fresh:
                return
            yield {name: _column([row[i] for row in fresh]) for i, name in enumerate(columns)}
            last = tuple(fresh[-1][i] for i in positions)
            seen = sum(1 for row in fresh if tuple(row[i] for i in positions) == last)
            if len(part) < int(chunk_rows) + (lead or 0):
                return
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(f"dataset {dataset!r}: cannot read {_hide_password(source.url)}: {reason}") from None
    finally:
        engine.dispose()


def _csv_chunks(
    source: CsvSource, columns: Sequence[str], numeric: set[str], *, chunk_rows: int, dataset: str
) -> Iterator[Chunk]:
    try:
        with source.path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            picks = _picks(next(reader, []), columns, dataset)
            while True:
                part = [row for _, row in zip(range(chunk_rows), reader, strict=False)]
                if not part:
                    return
                chunk = {}
                for name, i in zip(columns, picks, strict=True):
                    values = [row[i] if i < len(row) else "" for row in part]
                    chunk[name] = _column([_number(v) for v in values] if name in numeric else values)
                yield chunk
    except OSError as exc:
        raise ConfigError(f"dataset {dataset!r}: cannot read {source.path}: {exc.strerror}") from None


def _number(text: str) -> object:
    """A CSV field as a number, or the text itself (which the encoder refuses, naming the row)."""
    if text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _column(values: list[Any]) -> NDArray[Any]:
    """A numeric array when every value is a number (the encoder's fast path), else an object array."""
    try:
        numbers = np.asarray(values)
    except (ValueError, TypeError, OverflowError):
        numbers = None
    if numbers is not None and numbers.ndim == 1 and numbers.dtype.kind in "biuf":
        return numbers
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
