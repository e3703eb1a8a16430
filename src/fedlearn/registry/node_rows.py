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
    source: Source, columns: Sequence[str], schema: InputSchema, *, chunk_rows: int, dataset: str
) -> Iterator[Chunk]:
    """``columns`` of the dataset, ``chunk_rows`` rows at a time; a column it lacks is one clear error."""
    if isinstance(source, SqlSource):
        yield from _sql_chunks(source, columns, chunk_rows=chunk_rows, dataset=dataset)
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


def _sql_chunks(source: SqlSource, columns: Sequence[str], *, chunk_rows: int, dataset: str) -> Iterator[Chunk]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(_driver_url(source.url))
    try:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(text(source.query))
            picks = _picks(list(result.keys()), columns, dataset)
            for part in result.partitions(chunk_rows):
                yield {name: _column([row[i] for row in part]) for name, i in zip(columns, picks, strict=True)}
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
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
