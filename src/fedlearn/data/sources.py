"""Read a node's data where it lives into a ``Dataset``: CSV and Parquet files, SQL databases, DataFrames.

Each function opens its source's :class:`~fedlearn.data.reader.Reader` and hands it to
:func:`~fedlearn.data.reader.read_dataset`, so every source selects, declares and encodes columns
the same way (see docs/data-sources.md):

* ``target``: the label column, or None; ``features``: the feature columns in order (default: all others);
* ``columns``: declared types and category lists (default: float; text must be declared a category);
* ``task`` and ``n_classes``: classification labels are class codes ``0..n_classes-1`` (or a declared
  category), and ``n_classes`` is given, not inferred: a node that happens to lack a class must
  still build a model of the same shape as everyone else.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fedlearn.data.arrow_reader import frame_kind, open_arrow, open_csv, open_parquet
from fedlearn.data.columns import Declaration, category_names
from fedlearn.data.dataset import Dataset, TaskType
from fedlearn.data.reader import DEFAULT_BATCH_ROWS, read_dataset
from fedlearn.data.sql import SqlReader


def load_csv(
    path: str | Path,
    *,
    target: str | None,
    features: Sequence[str] | None = None,
    columns: Declaration | None = None,
    task: TaskType = "classification",
    n_classes: int = 0,
    name: str = "",
    delimiter: str = ",",
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Dataset:
    """Read a CSV file with a header row through pyarrow's streaming parser."""
    reader = open_csv(path, delimiter=delimiter, text_columns=category_names(columns))
    return read_dataset(
        reader, target=target, features=features, columns=columns, task=task, n_classes=n_classes,
        name=name or Path(path).stem, batch_rows=batch_rows,
    )  # fmt: skip


def load_parquet(
    path: str | Path,
    *,
    target: str | None,
    features: Sequence[str] | None = None,
    columns: Declaration | None = None,
    task: TaskType = "classification",
    n_classes: int = 0,
    name: str = "",
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Dataset:
    """Read a Parquet file, or a directory of Parquet files, in record batches of ``batch_rows``."""
    return read_dataset(
        open_parquet(path), target=target, features=features, columns=columns, task=task, n_classes=n_classes,
        name=name or Path(path).stem, batch_rows=batch_rows,
    )  # fmt: skip


def load_sql(
    url: str,
    query: str | None = None,
    *,
    table: str | None = None,
    target: str | None,
    features: Sequence[str] | None = None,
    columns: Declaration | None = None,
    task: TaskType = "classification",
    n_classes: int = 0,
    name: str = "",
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Dataset:
    """Run ``query`` (or read all of ``table``) in the database at ``url`` (any SQLAlchemy URL)."""
    return read_dataset(
        SqlReader(url, query, table=table), target=target, features=features, columns=columns, task=task,
        n_classes=n_classes, name=name or table or "sql", batch_rows=batch_rows,
    )  # fmt: skip


def load_frame(
    frame: object,
    *,
    target: str | None,
    features: Sequence[str] | None = None,
    columns: Declaration | None = None,
    task: TaskType = "classification",
    n_classes: int = 0,
    name: str = "",
) -> Dataset:
    """Read a pandas or polars DataFrame (or a pyarrow Table); feature names are its column names."""
    return read_dataset(
        open_arrow(frame), target=target, features=features, columns=columns, task=task, n_classes=n_classes,
        name=name or (frame_kind(frame) or "arrow") + " frame",
    )  # fmt: skip
