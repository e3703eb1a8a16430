"""Read any source in batches of named columns, and encode them: into a ``Dataset``, or batch by batch.

Every connector (:mod:`.arrow_reader` for Parquet, CSV, DataFrames and Arrow data; :mod:`.sql`
for databases) is a :class:`Reader`: it tells its columns' raw types from metadata, without
reading the rows, and then yields the rows in batches of at most ``batch_rows``. What happens to
the rows is written once, here, through the one encoder :meth:`InputSchema.encode`:

* :func:`read_dataset` reads a whole source into the ``Dataset`` a node trains on;
* :func:`iter_batches` encodes a source batch by batch against a model's schema, with the raw
  values of some key columns alongside, for batch scoring that writes predictions back by key.

Types are checked before the first row is read, so a text column that was not declared a
category fails when the node starts; a bad value (missing, fractional in an ``int`` column, an
unknown category) fails in the batch that holds it, naming its column and its row (rows are
counted from 0, the first data row).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from fedlearn.core.checks import check_int
from fedlearn.core.errors import ConfigError, SchemaError
from fedlearn.data.columns import Declaration, RawType, check_type, column_of, declared_columns, resolve_schema
from fedlearn.data.dataset import Dataset, TaskType
from fedlearn.data.schema import Column, InputSchema

DEFAULT_BATCH_ROWS = 65_536
"""Rows per batch unless a source says otherwise: a few MB of features, whatever the source's size."""


@runtime_checkable
class Reader(Protocol):
    """A source of named columns, read in batches; ``where`` names it in errors."""

    where: str

    def types(self) -> Mapping[str, RawType]:
        """Every column's raw type, in the source's order, from metadata (or a small sample of a query)."""
        ...

    def batches(self, columns: Sequence[str], batch_rows: int) -> Iterator[Mapping[str, NDArray[Any]]]:
        """The named columns as 1-D arrays of equal length, at most ``batch_rows`` rows a batch."""
        ...


class Batch(NamedTuple):
    """One batch of :func:`iter_batches`: the key columns' raw values and the encoded features of the same rows."""

    keys: dict[str, NDArray[Any]]
    features: NDArray[np.float32]


def open_reader(source: object) -> Reader:
    """A ``Reader`` for what users have: a Reader, a pandas or polars DataFrame, a pyarrow Table or
    Dataset, or the path of a CSV file (``.csv``, ``.tsv``, ``.txt``) or of a Parquet file or directory."""
    from fedlearn.data import arrow_reader

    if isinstance(source, Reader):
        return source
    if isinstance(source, str | Path):
        path = Path(source)
        if path.suffix.lower() in (".csv", ".tsv", ".txt"):
            return arrow_reader.open_csv(path, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        return arrow_reader.open_parquet(path)
    return arrow_reader.open_arrow(source)


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetLayout:
    """How a source's rows become a ``Dataset``: the features' schema, the target column and the task.

    Made by :func:`dataset_layout` from the source's column types, before any row is read.
    """

    schema: InputSchema
    label: Column | None
    task: TaskType
    n_classes: int
    where: str

    @property
    def columns(self) -> list[str]:
        """The source columns read: the features' and the target's."""
        return [*self.schema.names, *([self.label.name] if self.label is not None else [])]

    def encode(
        self, batch: Mapping[str, NDArray[Any]], first_row: int
    ) -> tuple[NDArray[np.float32], NDArray[Any] | None]:
        """A batch's features and targets (class codes, or float32 values); ``first_row`` numbers its rows in errors."""
        x = self.schema.encode(batch, where=self.where, first_row=first_row)
        if self.label is None:
            return x, None
        encoded = InputSchema((self.label,)).encode(
            {self.label.name: batch[self.label.name]}, where=self.where, first_row=first_row
        )
        if self.label.type == "category":
            return x, encoded.argmax(axis=1).astype(np.int64)
        return x, _checked_targets(encoded[:, 0].astype(np.float64), self.task, self.n_classes, self.where)


def dataset_layout(
    reader: Reader,
    *,
    target: str | None,
    features: Sequence[str] | None = None,
    columns: Declaration | None = None,
    task: TaskType = "classification",
    n_classes: int = 0,
) -> DatasetLayout:
    """The layout of ``reader``'s rows as a ``Dataset``, checked against its column types (see :func:`read_dataset`)."""
    where = reader.where
    types = reader.types()
    declared = declared_columns(columns)
    if target is not None and target not in types:
        raise ConfigError(f"{where} has no target column {target!r}; its columns are {list(types)}")
    if target is not None and features is not None and target in features:
        raise ConfigError(f"{where}: the target {target!r} is also listed in `features`")
    schema = resolve_schema(
        types, declared=declared, features=features, exclude=(target,) if target else (), where=where
    )
    label = None if target is None else column_of(target, types[target], declared, where)
    if label is not None and label.type == "category":
        if task != "classification":
            raise ConfigError(f"{where}: a category target {target!r} needs task = 'classification'; got {task!r}")
        if n_classes not in (0, len(label.categories)):
            raise ConfigError(
                f"{where}: target {target!r} has {len(label.categories)} categories but `n_classes` is {n_classes}"
            )
        n_classes = len(label.categories)
    elif label is not None and task == "classification" and n_classes < 2:
        raise ConfigError(f"{where}: classification needs `n_classes` >= 2 in the dataset config; got {n_classes}")
    return DatasetLayout(schema=schema, label=label, task=task, n_classes=n_classes, where=where)


def read_dataset(
    reader: Reader,
    *,
    target: str | None,
    features: Sequence[str] | None = None,
    columns: Declaration | None = None,
    task: TaskType = "classification",
    n_classes: int = 0,
    name: str = "",
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Dataset:
    """Every row of ``reader`` encoded into a ``Dataset``.

    ``features`` selects the feature columns and their order (default: every column but the
    target); ``columns`` declares their types and categories (default: float). A ``target``
    declared as a category becomes class codes in the declared order, and ``n_classes`` defaults
    to the number of categories; a numeric classification target must already hold codes
    ``0..n_classes-1``, with ``n_classes`` given: a node that lacks a class still builds the same model.
    """
    batch_rows = check_int("batch_rows", batch_rows, low=1)
    layout = dataset_layout(reader, target=target, features=features, columns=columns, task=task, n_classes=n_classes)
    blocks: list[NDArray[np.float32]] = []
    labels: list[NDArray[Any]] = []
    first_row = 0
    for batch in reader.batches(layout.columns, batch_rows):
        x, y = layout.encode(batch, first_row)
        blocks.append(x)
        if y is not None:
            labels.append(y)
        first_row += len(x)
    x = np.concatenate(blocks) if blocks else np.zeros((0, layout.schema.n_features), np.float32)
    y = None
    if layout.label is not None:
        empty = np.zeros(0, np.int64 if layout.task == "classification" else np.float32)
        y = np.concatenate(labels) if labels else empty
    return Dataset(
        x=x, y=y, task=layout.task, n_classes=layout.n_classes, feature_names=layout.schema.feature_names,
        name=name, schema=layout.schema,
    )  # fmt: skip


def iter_batches(
    source: object,
    schema: InputSchema,
    *,
    key_columns: Sequence[str] = (),
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> Iterator[Batch]:
    """The rows of ``source`` encoded by ``schema``, batch by batch, with the raw values of ``key_columns``.

    ``source`` is anything :func:`open_reader` takes, e.g. ``SqlReader(url, table="patients")``.
    Each :class:`Batch` holds at most ``batch_rows`` rows, in the source's order: ``features``
    (rows × ``schema.n_features``, float32, exactly as a node encodes them) and ``keys``, column name
    to the unencoded values of those rows, to write results back by. The source's column types are
    checked against ``schema`` before the first row is read; a bad value raises
    :class:`~fedlearn.core.errors.SchemaError` naming its column and its row in the whole source.
    """
    batch_rows = check_int("batch_rows", batch_rows, low=1)
    reader = open_reader(source)
    types = reader.types()
    for column in schema.columns:
        if column.name not in types:
            raise SchemaError(
                f"{reader.where} has no column {column.name!r}; the model takes {list(schema.names)}",
                column=column.name,
            )
        check_type(column, types[column.name], reader.where)
    missing = [key for key in key_columns if key not in types]
    if missing:
        raise ConfigError(f"{reader.where} has no key column(s) {missing}; its columns are {list(types)}")
    wanted = list(dict.fromkeys([*schema.names, *key_columns]))
    first_row = 0
    for batch in reader.batches(wanted, batch_rows):
        features = schema.encode(batch, where=reader.where, first_row=first_row)
        yield Batch(keys={key: batch[key] for key in key_columns}, features=features)
        first_row += len(features)


def _checked_targets(values: NDArray[np.float64], task: TaskType, n_classes: int, where: str) -> NDArray[Any]:
    if task == "regression":
        return values.astype(np.float32)
    codes = values.astype(np.int64)
    if not np.array_equal(codes, values) or (len(codes) and (codes.min() < 0 or codes.max() >= n_classes)):
        raise ConfigError(
            f"{where}: classification targets must be integers in [0, {n_classes - 1}] "
            f"(or declare the target a category with its classes)"
        )
    return codes
