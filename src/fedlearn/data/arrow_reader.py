"""Parquet files and directories, CSV files, Arrow data and DataFrames, all read through pyarrow in record batches.

Each becomes a ``pyarrow.dataset.Dataset``, whose schema is known without reading the rows (a
Parquet footer; a CSV file's first block) and whose rows stream in record batches with only the
columns asked for, so memory is bounded by the batch, not the file.

CSV goes through pyarrow's parser, one block of :data:`CSV_BLOCK_BYTES` at a time: a row longer
than a block is refused rather than buffered without end. A column's type is inferred from the
first block and then fixed for the whole file (numbers as float64, a declared category as text),
so a later block cannot change it; a value that does not parse is reported with its row.

pandas and polars are optional: neither is imported here, a frame is recognised by its module and
converted with its own ``to_arrow``-style method.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from fedlearn.core.errors import ConfigError
from fedlearn.data.columns import RawType

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as ds

CSV_BLOCK_BYTES = 1 << 20
"""Bytes of CSV parsed at a time, and so the longest row accepted."""


class ArrowReader:
    """A ``Reader`` over a ``pyarrow.dataset.Dataset``; ``where`` names the source in errors."""

    def __init__(self, dataset: ds.Dataset, *, where: str, types: Mapping[str, RawType] | None = None) -> None:
        self._dataset = dataset
        self.where = where
        self._types = types

    def __repr__(self) -> str:
        return f"ArrowReader({self.where!r})"

    def types(self) -> Mapping[str, RawType]:
        if self._types is not None:
            return self._types
        return {field.name: raw_type(field.type) for field in self._dataset.schema}

    def batches(self, columns: Sequence[str], batch_rows: int) -> Iterator[Mapping[str, NDArray[Any]]]:
        import pyarrow as pa

        missing = [name for name in columns if name not in self._dataset.schema.names]
        if missing:
            raise ConfigError(f"{self.where} has no column(s) {missing}; its columns are {self._dataset.schema.names}")
        try:
            batches = self._dataset.to_batches(
                columns=list(columns), batch_size=batch_rows, batch_readahead=0, fragment_readahead=0, use_threads=False
            )  # no read-ahead: memory is one batch (a row group at most), whatever the file's size
            for batch in batches:
                if batch.num_rows:
                    yield {name: to_numpy(batch.column(name)) for name in columns}
        except pa.ArrowException as exc:
            raise ConfigError(f"cannot read {self.where}: {_reason(exc, self._dataset.schema.names)}") from None


def raw_type(arrow_type: pa.DataType) -> RawType:
    """What an Arrow type holds, as :data:`~fedlearn.data.columns.RawType`."""
    import pyarrow as pa

    t = pa.types
    if t.is_dictionary(arrow_type):
        return raw_type(arrow_type.value_type)
    if t.is_boolean(arrow_type):
        return "bool"
    if t.is_integer(arrow_type):
        return "int"
    if t.is_floating(arrow_type) or t.is_decimal(arrow_type) or t.is_null(arrow_type):
        return "float"  # an all-null column: its values are missing, and reported so
    if t.is_string(arrow_type) or t.is_large_string(arrow_type) or t.is_string_view(arrow_type):
        return "str"
    return "other"


def to_numpy(column: pa.Array) -> NDArray[Any]:
    """An Arrow column as NumPy: numbers (nulls as NaN), booleans and text (nulls as None) as objects."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_decimal(column.type) or pa.types.is_null(column.type):
        column = pc.cast(column, pa.float64())
    return np.asarray(column.to_numpy(zero_copy_only=False))


def open_parquet(path: str | Path) -> ArrowReader:
    """A Parquet file, or a directory of them read as one table (hive partitions become columns)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"Parquet source {str(path)!r} does not exist")
    try:
        options = ds.ParquetFragmentScanOptions(pre_buffer=False)  # pre-buffering reads a whole file ahead
        dataset = ds.dataset(
            path, format=ds.ParquetFileFormat(default_fragment_scan_options=options), partitioning="hive"
        )
    except (pa.ArrowException, OSError) as exc:
        raise ConfigError(f"{path} is not a readable Parquet file or directory: {_reason(exc)}") from None
    return ArrowReader(dataset, where=str(path))


def open_csv(path: str | Path, *, delimiter: str = ",", text_columns: Sequence[str] = ()) -> ArrowReader:
    """A CSV file with a header row; ``text_columns`` (declared categories) are read as text whatever they hold."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.dataset as ds

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"cannot read {path}: no such file")
    if len(delimiter) != 1:
        raise ConfigError(f"`delimiter` must be one character; got {delimiter!r}")
    read = pcsv.ReadOptions(block_size=CSV_BLOCK_BYTES)
    parse = pcsv.ParseOptions(delimiter=delimiter)

    def dataset(convert: pcsv.ConvertOptions) -> ds.Dataset:
        try:
            return ds.dataset(path, format=ds.CsvFileFormat(parse, convert_options=convert, read_options=read))
        except (pa.ArrowException, OSError) as exc:
            raise ConfigError(f"cannot read {path}: {_reason(exc)}") from None

    inferred = dataset(pcsv.ConvertOptions(strings_can_be_null=True)).schema
    fixed = {field.name: pa.string() if field.name in text_columns else _fixed_type(field.type) for field in inferred}
    types: dict[str, RawType] = {
        field.name: "str" if field.name in text_columns else raw_type(field.type) for field in inferred
    }  # as inferred (an int column reports int), though numbers are read as float64
    converted = dataset(pcsv.ConvertOptions(column_types=fixed, strings_can_be_null=True))
    return ArrowReader(converted, where=str(path), types=types)


def _fixed_type(inferred: pa.DataType) -> pa.DataType:
    import pyarrow as pa

    kind = raw_type(inferred)
    if kind in ("int", "float"):
        return pa.float64()  # the first block's ints may be followed by 2.5: numbers are floats anyway
    return inferred


def open_arrow(data: object) -> ArrowReader:
    """A pandas or polars DataFrame, a pyarrow Table, RecordBatch or Dataset."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    if isinstance(data, ds.Dataset):
        return ArrowReader(data, where="Arrow dataset")
    if isinstance(data, pa.Table | pa.RecordBatch):
        return ArrowReader(ds.dataset(data), where="Arrow table")
    frame = frame_kind(data)
    if frame is None:
        raise ConfigError(
            "data must be a pandas or polars DataFrame, a pyarrow Table or Dataset, a CSV or Parquet path, "
            f"or a Reader; got {type(data).__name__}"
        )
    try:
        table = pa.Table.from_pandas(data, preserve_index=False) if frame == "pandas" else data.to_arrow()  # type: ignore[attr-defined]
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ConfigError(f"cannot read the {frame} DataFrame: {_reason(exc)}") from None
    return ArrowReader(ds.dataset(table), where=f"{frame} DataFrame")


def frame_kind(data: object) -> str | None:
    """``"pandas"`` or ``"polars"`` for a DataFrame of either (never importing them), else None."""
    module = type(data).__module__.split(".")[0]
    if type(data).__name__ == "DataFrame" and module in ("pandas", "polars"):
        return module
    return None


def is_arrow_like(data: object) -> bool:
    """Whether :func:`open_arrow` takes ``data``: a pandas or polars DataFrame, or a pyarrow object."""
    return frame_kind(data) is not None or type(data).__module__.split(".")[0] == "pyarrow"


_CSV_VALUE = re.compile(r"In CSV column #(\d+): Row #(\d+): CSV conversion error to \w+: invalid value '(.*)'")


def _reason(exc: BaseException, names: Sequence[str] = ()) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "straddl" in text:  # pyarrow's words for a row that does not fit in one block
        return f"a row is longer than {CSV_BLOCK_BYTES} bytes, the most one CSV row may hold"
    value = _CSV_VALUE.search(text)
    if value is not None and int(value.group(1)) < len(names):
        column, line, held = names[int(value.group(1))], value.group(2), value.group(3)
        return f"line {line}: column {column!r} holds {held!r}, not a number"
    return text.removeprefix("Error creating dataset. ")
