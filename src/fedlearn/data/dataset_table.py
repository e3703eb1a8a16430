"""A declared dataset read as its ``Dataset`` would be, but chunk by chunk from its source at every read.

A node answers analytics tasks on datasets it does not train on without holding them in memory:
each task reads the source afresh (the current rows of a database table, say), in chunks, through
the same :class:`~fedlearn.data.reader.DatasetLayout` that :func:`~fedlearn.data.reader.read_dataset`
uses. The columns are those a task sees on a loaded ``Dataset``: the encoded feature names
(``age``, ``smoker=never``, ...) and the target as ``y``, so a node's policy names the same columns
whichever way the dataset is read. It meets the analytics ``Table`` protocol (``schema``, ``chunks``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from fedlearn.core.errors import ConfigError
from fedlearn.data.reader import DEFAULT_BATCH_ROWS, DatasetLayout, Reader

TARGET = "y"
"""The name a dataset's target answers to, as for a loaded ``Dataset``."""


class DatasetTable:
    """``reader``'s rows laid out by ``layout``: the features by their encoded names, the target as ``y``."""

    def __init__(self, reader: Reader, layout: DatasetLayout) -> None:
        if layout.label is not None and TARGET in layout.schema.feature_names:
            raise ConfigError(f"{reader.where}: a feature is named {TARGET!r}, the name the target answers to")
        self.reader = reader
        self.layout = layout

    def __repr__(self) -> str:
        return f"DatasetTable({self.reader.where!r})"

    def schema(self) -> Mapping[str, str]:
        columns = dict.fromkeys(self.layout.schema.feature_names, "float")
        if self.layout.label is not None:
            columns[TARGET] = "int" if self.layout.task == "classification" else "float"
        return columns

    def chunks(self, columns: Sequence[str], chunk_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[NDArray[np.float64]]:
        known = self.schema()
        missing = [name for name in columns if name not in known]
        if missing:
            raise ConfigError(f"{self.reader.where} has no column(s) {missing}; its columns are {list(known)}")
        index = {name: i for i, name in enumerate(self.layout.schema.feature_names)}
        first_row = 0
        for batch in self.reader.batches(self.layout.columns, chunk_rows):
            x, y = self.layout.encode(batch, first_row)
            first_row += len(x)
            picked = [x[:, index[name]] if name != TARGET or y is None else y for name in columns]
            yield np.column_stack(picked).astype(np.float64)
