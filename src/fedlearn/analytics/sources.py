"""Where a node's rows come from: named columns, read in bounded chunks.

A ``Table`` answers two questions: which columns it has and of what type (the schema, which
is all a schema check ever shares), and the values of some columns, chunk by chunk, as float64.
Reading in chunks is what keeps summarising at constant memory whatever the row count.

:class:`ArrayTable` holds columns in memory (and ``Dataset``). :class:`ReaderTable` reads any
connector of :mod:`fedlearn.data` in its batches: :class:`CsvTable` here, DataFrames and Parquet
in :mod:`.tables`, SQL in :mod:`.sql_table`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fedlearn.core.checks import name_mismatch
from fedlearn.core.errors import ConfigError
from fedlearn.data.arrow_reader import is_arrow_like, open_csv
from fedlearn.data.dataset import Dataset
from fedlearn.data.reader import Reader

DEFAULT_CHUNK_ROWS = 65_536
TYPES = ("missing", "int", "float", "bool", "str")
"""Column types a schema may report; a schema reply carries the index into this tuple."""


@runtime_checkable
class Table(Protocol):
    def schema(self) -> Mapping[str, str]:
        """Column name -> one of :data:`TYPES` (never ``"missing"``)."""
        ...

    def chunks(self, columns: Sequence[str], chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[NDArray[np.float64]]:
        """The named columns, in that order, as float64 arrays of at most ``chunk_rows`` rows."""
        ...


def dtype_type(dtype: np.dtype[Any]) -> str:
    return {"b": "bool", "i": "int", "u": "int", "f": "float"}.get(dtype.kind, "str")


def check_columns(schema: Mapping[str, str], columns: Sequence[str], where: str) -> None:
    missing = name_mismatch(schema, columns).missing  # the table's other columns are not asked for
    if missing:
        names = ", ".join(repr(name) for name in missing)
        raise ConfigError(f"{where} has no column {names}; its columns are {sorted(schema)}")
    for name in columns:
        if schema[name] == "str":
            raise ConfigError(f"{where}: column {name!r} is text; only numeric columns can be summarised")


class ArrayTable:
    """Columns held in memory, each a 1-D array of the same length."""

    def __init__(self, columns: Mapping[str, ArrayLike], *, name: str = "array table") -> None:
        arrays: dict[str, NDArray[Any]] = {}
        for key, value in columns.items():
            array = np.array(value)  # a private copy: the table must not change under the caller's edits
            if array.ndim != 1:
                raise ConfigError(f"{name}: column {key!r} must be 1-D; got shape {array.shape}")
            array.flags.writeable = False
            arrays[str(key)] = array
        lengths = {len(a) for a in arrays.values()}
        if len(lengths) > 1:
            raise ConfigError(f"{name}: columns must have equal lengths; got {sorted(lengths)}")
        self._columns = arrays
        self._name = name

    def __len__(self) -> int:
        return len(next(iter(self._columns.values()))) if self._columns else 0

    def __repr__(self) -> str:
        return f"ArrayTable({self._name!r}, {len(self)} rows, columns={list(self._columns)})"

    def schema(self) -> Mapping[str, str]:
        return {k: dtype_type(v.dtype) for k, v in self._columns.items()}

    def chunks(self, columns: Sequence[str], chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[NDArray[np.float64]]:
        check_columns(self.schema(), columns, self._name)
        for start in range(0, len(self), chunk_rows):
            yield np.column_stack([self._columns[c][start : start + chunk_rows] for c in columns]).astype(np.float64)

    def appended(self, other: ArrayTable) -> ArrayTable:
        """This table with ``other``'s rows added at the end (simulating a node's new rows)."""
        mismatch = name_mismatch(other._columns, self._columns)
        if mismatch:
            raise ConfigError(f"{self._name}: appended rows must have columns {list(self._columns)}; {mismatch}")
        return ArrayTable(
            {k: np.concatenate([v, other._columns[k]]) for k, v in self._columns.items()}, name=self._name
        )

    def without(self, other: ArrayTable) -> ArrayTable:
        """This table with one matching row removed per row of ``other`` (simulating deletion)."""
        names = list(self._columns)
        mismatch = name_mismatch(other._columns, names)
        if mismatch:
            raise ConfigError(f"{self._name}: removed rows must have columns {names}; {mismatch}")
        to_remove = Counter(zip(*(other._columns[k].tolist() for k in names), strict=True))
        wanted = sum(to_remove.values())
        keep = np.ones(len(self), dtype=bool)
        for i, row in enumerate(zip(*(self._columns[k].tolist() for k in names), strict=True)):
            if to_remove[row] > 0:
                to_remove[row] -= 1
                keep[i] = False
        if int((~keep).sum()) != wanted:
            raise ConfigError(f"{self._name}: {wanted - int((~keep).sum())} of the rows to remove are not in the table")
        return ArrayTable({k: v[keep] for k, v in self._columns.items()}, name=self._name)


def table_from_dataset(dataset: Dataset, *, target: str = "y") -> ArrayTable:
    """A ``Dataset`` as named columns: its feature names (``x0``, ``x1``, … when it has none)
    and ``y`` under the name ``target``."""
    names = dataset.feature_names or tuple(f"x{i}" for i in range(dataset.n_features))
    columns: dict[str, NDArray[Any]] = {n: dataset.x[:, i] for i, n in enumerate(names)}
    if dataset.y is not None:
        if target in columns:
            raise ConfigError(f"dataset {dataset.name!r}: target name {target!r} clashes with a feature name")
        columns[target] = np.asarray(dataset.y)
    return ArrayTable(columns, name=f"dataset {dataset.name!r}" if dataset.name else "dataset")


class ReaderTable:
    """Any data connector as a ``Table``; ``reader`` is a :class:`~fedlearn.data.reader.Reader`.

    The schema comes from the source's metadata (a Parquet footer, a frame's dtypes, a CSV file's
    first block) without reading the rows, and chunks stream through the connector's batches.
    Text columns report ``"str"`` and are refused by name when asked for; a missing value reaches
    the scan as NaN, which refuses it naming the column.
    """

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


def _floats(values: NDArray[Any]) -> NDArray[np.float64]:
    if values.dtype == object:  # booleans or numbers with nulls: a null is NaN, which the scan refuses by name
        return np.array([np.nan if value is None else value for value in values], dtype=np.float64)
    return values.astype(np.float64)


class CsvTable(ReaderTable):
    """A CSV file with a header row, parsed by pyarrow block by block and never loaded whole.

    Column types come from the first block (:data:`~fedlearn.data.arrow_reader.CSV_BLOCK_BYTES`):
    ``int``, ``float``, ``bool`` or ``str``. Numbers are read as float64 throughout, so a fraction
    further down an ``int`` column reads; a value that is not a number is reported with its line.
    """

    def __init__(self, path: str | Path, *, delimiter: str = ",") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"CSV file {str(self.path)!r} does not exist")
        super().__init__(open_csv(self.path, delimiter=delimiter))

    def chunks(self, columns: Sequence[str], chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[NDArray[np.float64]]:
        schema = self.schema()
        for name in columns:
            if schema.get(name) == "str":
                self._refuse_text(name)
        yield from super().chunks(columns, chunk_rows)

    def _refuse_text(self, name: str) -> None:
        """Name the line of the first value of ``name`` that is not a number, when there is one."""
        line = 2  # the header is line 1
        for batch in self.reader.batches([name], DEFAULT_CHUNK_ROWS):
            for value in batch[name]:
                try:
                    float(value if value is not None else 0.0)
                except ValueError:
                    raise ConfigError(f"{self.path}:{line}: column {name!r} holds {value!r}, not a number") from None
                line += 1


class ConcatTable:
    """Several tables with the same columns read one after another, e.g. a node's CSV batches."""

    def __init__(self, tables: Sequence[Table]) -> None:
        if not tables:
            raise ConfigError("ConcatTable needs at least one table")
        self._tables = tuple(tables)

    def schema(self) -> Mapping[str, str]:
        return self._tables[0].schema()

    def chunks(self, columns: Sequence[str], chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[NDArray[np.float64]]:
        for table in self._tables:
            yield from table.chunks(columns, chunk_rows)


def as_table(data: object, *, target: str = "y") -> Table:
    """Accept what users naturally have: a ``Table``, a ``Dataset``, a mapping of columns, a data
    connector's ``Reader``, or a pandas or polars DataFrame or pyarrow Table (a
    :class:`~fedlearn.analytics.tables.FrameTable`)."""
    if is_arrow_like(data):
        from fedlearn.analytics.tables import FrameTable

        return FrameTable(data)
    if isinstance(data, Dataset):
        return table_from_dataset(data, target=target)
    if isinstance(data, Table):
        return data
    if isinstance(data, Reader):
        return ReaderTable(data)
    if isinstance(data, Mapping):
        return ArrayTable(data)
    raise ConfigError(
        f"data must be a Dataset, a Table, a DataFrame or a mapping of column name to array; got {type(data).__name__}"
    )
