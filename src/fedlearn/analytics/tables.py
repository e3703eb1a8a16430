"""Tables over the data connectors: DataFrames, Parquet and any :class:`~fedlearn.data.reader.Reader`.

A :class:`ReaderTable` answers the ``Table`` protocol from a connector: its schema comes from
the source's metadata (a Parquet footer, a frame's dtypes) without reading the rows, and its
chunks stream through the connector's record batches, so summarising a file larger than memory
holds one chunk at a time. Text columns report ``"str"`` and are refused by name when asked for;
a missing value reaches the scan as NaN, which refuses it naming the column.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedlearn.analytics.sources import DEFAULT_CHUNK_ROWS, check_columns
from fedlearn.data.arrow_reader import open_arrow, open_parquet
from fedlearn.data.reader import Reader


class ReaderTable:
    """Any data connector as a ``Table``; ``reader`` is a :class:`~fedlearn.data.reader.Reader`."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reader.where!r})"

    def schema(self) -> Mapping[str, str]:
        return {name: "str" if raw == "other" else raw for name, raw in self.reader.types().items()}

    def chunks(self, columns: Sequence[str], chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[NDArray[np.float64]]:
        check_columns(self.schema(), columns, self.reader.where)
        for batch in self.reader.batches(columns, chunk_rows):
            yield np.column_stack([_floats(batch[name]) for name in columns])


class FrameTable(ReaderTable):
    """A pandas or polars DataFrame (or a pyarrow Table or Dataset), column names as they are."""

    def __init__(self, frame: object) -> None:
        super().__init__(open_arrow(frame))


class ParquetTable(ReaderTable):
    """A Parquet file, or a directory of them, read in record batches and never loaded whole."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(open_parquet(path))


def _floats(values: NDArray[Any]) -> NDArray[np.float64]:
    if values.dtype == object:  # booleans or numbers with nulls: a null is NaN, which the scan refuses by name
        return np.array([np.nan if value is None else value for value in values], dtype=np.float64)
    return values.astype(np.float64)
