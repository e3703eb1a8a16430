"""DataFrames and Parquet as analytics tables, read through the connectors in record batches.

Both are :class:`~fedlearn.analytics.sources.ReaderTable`: the schema comes from metadata (a frame's
dtypes, a Parquet footer) and the rows stream batch by batch, so summarising a Parquet directory
larger than memory holds one chunk at a time.
"""

from __future__ import annotations

from pathlib import Path

from fedlearn.analytics.sources import ReaderTable
from fedlearn.data.arrow_reader import open_arrow, open_parquet


class FrameTable(ReaderTable):
    """A pandas or polars DataFrame (or a pyarrow Table or Dataset), column names as they are."""

    def __init__(self, frame: object) -> None:
        super().__init__(open_arrow(frame))


class ParquetTable(ReaderTable):
    """A Parquet file, or a directory of them, read in record batches and never loaded whole."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(open_parquet(path))
