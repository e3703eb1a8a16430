"""Declared input columns, and the one encoder that turns named columns into a feature matrix.

Every node must turn its rows into the same feature columns in the same order, or the federated
model means nothing; a served or scored model must do the same to rows it has never seen. So the
columns a model takes are declared once, as an :class:`InputSchema`, and every place that builds
features (a node's connector, the serving endpoint, a batch scoring job) calls :meth:`InputSchema.encode`.

A ``category`` column is declared with its category list and becomes one indicator feature per
category, in the declared order (``color=red``, ``color=green``). A node whose rows lack a
category still builds the same columns, and a value outside the list is refused: silently
mapping it to zeros would score a row as if it belonged to no category at all.

Encoding is strict and names the column at fault (:class:`~fedlearn.core.errors.SchemaError`):
a missing column, text in a numeric column, a missing value (``None`` or NaN), a fractional value
in an ``int`` column, or an unknown category. Extra columns are ignored, so a row key or the
target may travel alongside the features.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

from fedlearn.core.errors import ConfigError, SchemaError

ColumnType = Literal["float", "int", "bool", "category"]
COLUMN_TYPES: tuple[str, ...] = get_args(ColumnType)


@dataclass(frozen=True, slots=True, kw_only=True)
class Column:
    """One input column: its name, its type and, for ``category``, its categories in encoding order."""

    name: str
    type: ColumnType = "float"
    categories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a column needs a non-empty name")
        if self.type not in COLUMN_TYPES:
            raise ConfigError(f"column {self.name!r}: type must be one of {list(COLUMN_TYPES)}; got {self.type!r}")
        if self.type == "category":
            if not self.categories:
                raise ConfigError(f"column {self.name!r}: a category column needs its list of categories")
            if len(set(self.categories)) != len(self.categories):
                raise ConfigError(f"column {self.name!r}: categories must be distinct; got {list(self.categories)}")
        elif self.categories:
            raise ConfigError(f"column {self.name!r}: only a category column takes categories (type is {self.type!r})")

    @property
    def features(self) -> tuple[str, ...]:
        """The feature names this column becomes: itself, or one ``name=category`` per category."""
        if self.type == "category":
            return tuple(f"{self.name}={category}" for category in self.categories)
        return (self.name,)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.categories:
            out["categories"] = list(self.categories)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Column:
        unknown = set(data) - {"name", "type", "categories"}
        if unknown:
            raise ConfigError(f"a column takes name, type and categories; got unknown key(s) {sorted(unknown)}")
        categories = data.get("categories", ())
        if not isinstance(categories, list | tuple) or not all(isinstance(c, str) for c in categories):
            raise ConfigError(f"column {data.get('name')!r}: categories must be a list of strings")
        return cls(name=str(data.get("name", "")), type=data.get("type", "float"), categories=tuple(categories))


@dataclass(frozen=True, slots=True)
class InputSchema:
    """The columns a model takes, in order; ``encode`` builds its feature matrix."""

    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        if not self.columns:
            raise ConfigError("an input schema needs at least one column")
        counts = Counter(column.name for column in self.columns)  # linear: a hostile schema may be long
        repeated = sorted(name for name, count in counts.items() if count > 1)
        if repeated:
            raise ConfigError(f"an input schema names column(s) {repeated} more than once")

    @classmethod
    def numeric(cls, names: Sequence[str]) -> InputSchema:
        """A schema of float columns, the default for data without declared types."""
        return cls(tuple(Column(name=str(name)) for name in names))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(feature for column in self.columns for feature in column.features)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def to_json(self) -> list[dict[str, Any]]:
        return [column.to_json() for column in self.columns]

    @classmethod
    def from_json(cls, data: Sequence[Mapping[str, Any]]) -> InputSchema:
        if not isinstance(data, list | tuple) or not all(isinstance(item, Mapping) for item in data):
            raise ConfigError("an input schema is a list of column objects")
        return cls(tuple(Column.from_json(item) for item in data))

    def encode(self, columns: Mapping[str, Any], *, where: str = "input", first_row: int = 0) -> NDArray[np.float32]:
        """The feature matrix (rows × ``n_features``, float32) of named columns of equal length.

        ``first_row`` is the number of the first row in errors, so a source read in batches names
        the row in the whole source rather than in the batch.
        """
        present = {str(key): value for key, value in columns.items()}
        blocks: list[NDArray[np.float32]] = []
        rows: int | None = None
        for column in self.columns:
            if column.name not in present:
                raise SchemaError(
                    f"{where} has no column {column.name!r}; the model takes {list(self.names)}", column=column.name
                )
            block = _encode_column(column, present[column.name], where, first_row)
            if rows is not None and len(block) != rows:
                raise SchemaError(
                    f"{where}: column {column.name!r} has {len(block)} rows, others have {rows}", column=column.name
                )
            rows = len(block)
            blocks.append(block)
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((0, 0), np.float32)


def _encode_column(column: Column, values: Any, where: str, first_row: int) -> NDArray[np.float32]:
    array = np.asarray(values, dtype=object if column.type == "category" else None)
    if array.ndim != 1:
        raise SchemaError(f"{where}: column {column.name!r} must be one value per row", column=column.name)
    if column.type == "category":
        return _one_hot(column, array, where, first_row)
    return _numeric(column, array, where, first_row)[:, None]


def _numeric(column: Column, array: NDArray[Any], where: str, first_row: int) -> NDArray[np.float32]:
    if array.dtype.kind not in "biuf":
        converted = np.empty(len(array), np.float64)
        for row, value in enumerate(array.astype(object)):  # Python objects: text shows as 'old', not np.str_
            if not isinstance(value, bool | int | float | np.number | np.bool_):
                what = "a missing value" if value is None else f"{value!r}"
                raise SchemaError(
                    f"{where}: column {column.name!r} must be {column.type}; row {first_row + row} holds {what}",
                    column=column.name,
                )
            converted[row] = value
        array = converted
    values = array.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise SchemaError(
            f"{where}: column {column.name!r} holds a missing or infinite value at row {first_row + int(bad[0])}",
            column=column.name,
        )
    if column.type in ("int", "bool"):
        allowed = np.isin(values, (0.0, 1.0)) if column.type == "bool" else values == np.round(values)
        off = np.flatnonzero(~allowed)
        if len(off):
            raise SchemaError(
                f"{where}: column {column.name!r} must be {column.type}; row {first_row + int(off[0])} "
                f"holds {values[off[0]]!r}",
                column=column.name,
            )
    return values.astype(np.float32)


def _one_hot(column: Column, array: NDArray[Any], where: str, first_row: int) -> NDArray[np.float32]:
    index = {category: position for position, category in enumerate(column.categories)}
    codes = np.empty(len(array), np.int64)
    for row, value in enumerate(array):
        code = index.get(value) if isinstance(value, str) else None
        if code is None:
            missing = value is None or (isinstance(value, float) and np.isnan(value))
            what = "a missing value" if missing else repr(value)
            raise SchemaError(
                f"{where}: column {column.name!r}, row {first_row + row}: {what} is not one of its categories "
                f"{list(column.categories)}",
                column=column.name,
            )
        codes[row] = code
    out = np.zeros((len(array), len(column.categories)), np.float32)
    out[np.arange(len(array)), codes] = 1.0
    return out
