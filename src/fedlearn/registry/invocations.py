"""The bodies of a scoring request, as MLflow's scoring server takes them, turned into named columns.

A served model is called the way an MLflow model server is, so clients written for MLflow work
unchanged. A JSON body holds exactly one of:

- ``{"dataframe_split": {"columns": [...], "data": [[...], ...], "index": [...]}}`` (pandas'
  ``split`` orient; ``index`` is optional and ignored);
- ``{"dataframe_records": [{"column": value, ...}, ...]}`` (pandas' ``records`` orient);
- ``{"inputs": ...}`` or ``{"instances": ...}`` (TF serving's keys): a list of rows, each a list
  of values in the schema's column order or an object of named values, or an object mapping each
  column to its list of values.

A ``text/csv`` body is a header line of column names, then one line per row.

What comes out is a mapping of column name to its values, for
:meth:`~fedlearn.data.schema.InputSchema.encode`, which does the typed checks and names the column
at fault. Checked here is what ``encode`` cannot see: the protocol's shape, that every cell is one
scalar (a nested list in a cell would make numpy build a ragged array, and an integer past float64's
range would overflow), and the row bound, which is checked as soon as the rows are counted, before
any row is looked at. Every refusal is a :class:`SchemaError` (422), or :class:`LimitExceeded` (413)
for too many rows.

Parsing is the standard library's ``json``, about 5 MB/s on a slow core: the body's byte limit,
checked before a byte is read, is what bounds a request's parsing time and memory.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from fedlearn.core.errors import LimitExceeded, SchemaError
from fedlearn.data.schema import InputSchema

JSON = "application/json"
CSV = "text/csv"
MEDIA_TYPES = (JSON, CSV)

FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")
"""The keys of a JSON body, of which it holds exactly one, as in MLflow's scoring protocol."""

Columns = dict[str, Any]
"""Column name to its values: a list, or a numpy array for a column of plain numbers."""

_SCALARS = (str, int, float, bool, type(None))
_pause = threading.Lock()
_parsing = 0  # bodies being parsed now, by all threads
_collecting = True  # whether the collector ran before the first of them paused it
_LARGEST = 2**1023  # past float64's range an integer would overflow, not be refused, in the encoder


def media_type(content_type: str | None) -> str | None:
    """``application/json`` or ``text/csv`` when ``content_type`` names one in UTF-8 (the default), else None."""
    if not content_type:
        return None
    kind, *parameters = (part.strip() for part in content_type.split(";"))
    charset = next((value for key, _, value in (p.partition("=") for p in parameters) if key.lower() == "charset"), "")
    if charset.strip('"').lower() not in ("", "utf-8", "utf8"):
        return None
    return kind.lower() if kind.lower() in MEDIA_TYPES else None


def parse_body(body: bytes, media: str, schema: InputSchema, *, max_rows: int) -> Columns:
    """The columns of a ``media`` body (one of :data:`MEDIA_TYPES`) for a model of ``schema``."""
    columns = _parse_csv(_text(body), schema, max_rows) if media == CSV else _parse_json(_text(body), schema, max_rows)
    if not columns or not any(len(values) for values in columns.values()):
        raise SchemaError("the request holds no rows; send at least one")
    return columns


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SchemaError(f"the request body is not UTF-8: byte {exc.start} is {body[exc.start]:#04x}") from None


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a body is parsed, whichever thread parses it.

    ``json.loads`` builds a container per row, and the collector, run every few hundred new
    containers over an ever larger heap, made a 4 MiB body of one-value rows take 2.3 s instead of
    0.3 s. Parsed JSON holds no reference cycles, so pausing the collector frees nothing later.
    """
    global _parsing, _collecting  # noqa: PLW0603  # one count for the whole process, as the collector is
    with _pause:
        if _parsing == 0:
            _collecting = gc.isenabled()
            gc.disable()
        _parsing += 1
    try:
        yield
    finally:
        with _pause:
            _parsing -= 1
            if _parsing == 0 and _collecting:
                gc.enable()


def _parse_json(text: str, schema: InputSchema, max_rows: int) -> Columns:
    try:
        with _collector_paused():
            document = json.loads(text)
    except RecursionError:
        raise SchemaError("the request body is JSON nested too deeply; a row is a flat list or object") from None
    except ValueError as exc:
        raise SchemaError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise SchemaError(f"the request body must be a JSON object with one of {list(FORMATS)}; got {_kind(document)}")
    keys = [key for key in document if key in FORMATS]
    unknown = sorted(set(document) - set(FORMATS))
    if len(keys) != 1 or unknown:
        got = f"unknown key(s) {unknown}" if unknown else f"{keys or 'none'}"
        raise SchemaError(f"the request body must hold exactly one of {list(FORMATS)}; got {got}")
    key = keys[0]
    value = document[key]
    if key == "dataframe_split":
        return _split(value, max_rows)
    if key == "dataframe_records":
        if not isinstance(value, list):
            raise SchemaError(f"`dataframe_records` must be a list of row objects; got {_kind(value)}")
        return _records(value, key, schema, max_rows)
    return _inputs(value, key, schema, max_rows)


def _split(value: Any, max_rows: int) -> Columns:
    if not isinstance(value, dict):
        raise SchemaError(f"`dataframe_split` must be an object with columns and data; got {_kind(value)}")
    unknown = sorted(set(value) - {"columns", "data", "index"})
    if unknown:
        raise SchemaError(f"`dataframe_split` takes columns, data and index; got unknown key(s) {unknown}")
    names, data = value.get("columns"), value.get("data")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise SchemaError("`dataframe_split.columns` must be a list of column names")
    if len(set(names)) != len(names):
        raise SchemaError(f"`dataframe_split.columns` names a column more than once: {names}")
    if not isinstance(data, list):
        raise SchemaError(f"`dataframe_split.data` must be a list of rows; got {_kind(data)}")
    _check_rows(len(data), max_rows)
    index = value.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise SchemaError(f"`dataframe_split.index` must be a list of one label per row ({len(data)})")
    return _transpose(data, names, "dataframe_split.data")


def _inputs(value: Any, key: str, schema: InputSchema, max_rows: int) -> Columns:
    if isinstance(value, dict):
        columns: Columns = {}
        for name, values in value.items():
            if not isinstance(values, list):
                raise SchemaError(
                    f"`{key}.{name}` must be a list of one value per row; got {_kind(values)}", column=name
                )
            _check_rows(len(values), max_rows)
            columns[name] = _scalars(values, name)
        return columns
    if not isinstance(value, list):
        raise SchemaError(f"`{key}` must be a list of rows or an object of columns; got {_kind(value)}")
    if value and isinstance(value[0], dict):
        return _records(value, key, schema, max_rows)
    _check_rows(len(value), max_rows)
    return _transpose(value, list(schema.names), key)


def _records(rows: list[Any], key: str, schema: InputSchema, max_rows: int) -> Columns:
    _check_rows(len(rows), max_rows)
    if not all(type(row) is dict for row in rows):
        number, row = next((n, row) for n, row in enumerate(rows) if type(row) is not dict)
        raise SchemaError(f"`{key}` row {number} must be an object of column values; got {_kind(row)}")
    columns: Columns = {}
    for name in schema.names:
        try:
            columns[name] = _scalars([row[name] for row in rows], name)
        except KeyError:
            number = next(n for n, row in enumerate(rows) if name not in row)
            raise SchemaError(f"`{key}` row {number} has no column {name!r}", column=name) from None
    return columns


def _transpose(rows: list[Any], names: Sequence[str], where: str) -> Columns:
    """Rows of values in ``names``' order as columns, each row checked to be a list of the right length."""
    width = len(names)
    if not all(type(row) is list and len(row) == width for row in rows):
        number, row = next((n, r) for n, r in enumerate(rows) if type(r) is not list or len(r) != width)
        got = f"{len(row)} values" if isinstance(row, list) else f"{_kind(row)}"
        raise SchemaError(f"`{where}` row {number} must be a list of {width} values {list(names)}; got {got}")
    if not rows:
        return {name: [] for name in names}
    return {name: _scalars(list(values), name) for name, values in zip(names, zip(*rows, strict=True), strict=True)}


def _scalars(values: list[Any], name: str) -> Any:
    """``values`` if each is one JSON scalar, as a float or integer array when numpy reads them as one.

    numpy checks a column of plain numbers in C; only a column it does not read as a flat array of
    numbers or text (nulls, a nested list, an integer past float64) is looked at value by value.
    """
    try:
        array = np.asarray(values)
    except (ValueError, OverflowError):  # ragged nesting
        array = None
    if array is not None and array.ndim == 1:
        if array.dtype.kind in "biuf":
            return array
        if array.dtype.kind == "U":  # text, or text and numbers: the encoder sees the values as they came
            return values
    for number, value in enumerate(values):
        if not isinstance(value, _SCALARS):
            raise SchemaError(f"column {name!r}, row {number}: must be one value; got {_kind(value)}", column=name)
        if type(value) is int and not -_LARGEST < value < _LARGEST:
            raise SchemaError(
                f"column {name!r}, row {number}: an integer of {len(str(abs(value)))} digits is out of range",
                column=name,
            )
    return values


def _parse_csv(text: str, schema: InputSchema, max_rows: int) -> Columns:
    try:
        table = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise SchemaError(f"the request body is not valid CSV: {exc}") from None
    if not table:
        raise SchemaError("the CSV body is empty; its first line names the columns")
    header, rows = table[0], [row for row in table[1:] if row]
    _check_rows(len(rows), max_rows)
    if len(set(header)) != len(header):
        raise SchemaError(f"the CSV header names a column more than once: {header}")
    columns = _transpose(rows, header, "text/csv")
    types = {column.name: column.type for column in schema.columns}
    return {name: values if types.get(name) == "category" else _numbers(values) for name, values in columns.items()}


def _numbers(cells: list[str]) -> list[Any]:
    """CSV cells of a numeric column: a number where the cell is one, None where empty, else the text itself."""
    out: list[Any] = []
    for cell in cells:
        try:
            out.append(float(cell) if cell.strip() else None)
        except ValueError:
            out.append(cell)  # encode names the column and the row that holds it
    return out


def _check_rows(rows: int, max_rows: int) -> None:
    if rows > max_rows:
        raise LimitExceeded(
            f"the request holds {rows} rows, over this server's limit of {max_rows}; "
            "split it, or start `fedlearn serve` with a larger --max-rows"
        )


def _kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", float: "a number", int: "a number"}
    return kinds.get(type(value), "null")
