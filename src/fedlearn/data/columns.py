"""From a source's columns and the user's declarations to the :class:`InputSchema` a dataset is encoded with.

A connector knows each column's raw type from metadata (a Parquet footer, a DataFrame's dtypes,
the first rows of a query): ``int``, ``float``, ``bool``, ``str`` or ``other`` (dates, bytes, ...).
The user declares what the columns mean, either as :class:`Column` objects or as a mapping::

    {"color": ["red", "green"],                             # a list: a category column
     "age": "int",                                          # a string: the column's type
     "smoker": {"type": "bool"},                            # or a table, as in NODE.toml
     "region": {"type": "category", "categories": ["north", "south"]}}

Undeclared numeric columns are ``float``. A text column must be declared as a category with its
category list: there is no way to guess, on one node, the list every node must share, so it is
refused here, when the source is opened, rather than in round 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from fedlearn.core.errors import ConfigError, SchemaError
from fedlearn.data.schema import Column, InputSchema

RawType = Literal["int", "float", "bool", "str", "other"]
"""A source column's type as read from its metadata, before any declaration."""

Declaration = Sequence[Column] | Mapping[str, Any]
"""Declared columns: :class:`Column` objects, or a mapping of column name to a type, a category list or a table."""


def declared_columns(declaration: Declaration | None) -> dict[str, Column]:
    """The declared columns by name; ``None`` declares none."""
    if declaration is None:
        return {}
    if isinstance(declaration, Mapping):
        return {str(name): _column(str(name), spec) for name, spec in declaration.items()}
    if isinstance(declaration, str) or not all(isinstance(column, Column) for column in declaration):
        raise ConfigError(
            f"`columns` must be a list of Column or a mapping of column name to its declaration; got {declaration!r}"
        )
    columns = {column.name: column for column in declaration}
    if len(columns) != len(declaration):
        raise ConfigError("`columns` declares a column more than once")
    return columns


def category_names(declaration: Declaration | None) -> list[str]:
    """The columns declared categories, which a CSV reader must read as text whatever they hold."""
    return [column.name for column in declared_columns(declaration).values() if column.type == "category"]


def _column(name: str, spec: Any) -> Column:
    if isinstance(spec, Column):
        if spec.name != name:
            raise ConfigError(f"`columns`: the entry {name!r} declares a column named {spec.name!r}")
        return spec
    if isinstance(spec, str):
        return Column(name=name, type=spec)  # type: ignore[arg-type]  # Column checks the type
    if isinstance(spec, list | tuple):
        return Column.from_json({"name": name, "type": "category", "categories": list(spec)})
    if isinstance(spec, Mapping):
        return Column.from_json({"name": name, **spec})
    raise ConfigError(
        f"`columns.{name}` must be a type name, a list of categories or a table with type and categories; got {spec!r}"
    )


def resolve_schema(
    types: Mapping[str, RawType],
    *,
    declared: Mapping[str, Column],
    features: Sequence[str] | None,
    exclude: Sequence[str],
    where: str,
) -> InputSchema:
    """The schema of the feature columns: ``features`` in that order, else every column not in ``exclude``."""
    unknown = [name for name in declared if name not in types]
    if unknown:
        raise ConfigError(f"{where}: declared column(s) {unknown} are not in its columns {list(types)}")
    if features is not None:
        missing = [name for name in features if name not in types]
        if missing:
            raise ConfigError(f"{where} has no column(s) {missing}; its columns are {list(types)}")
        chosen = list(features)
    else:
        chosen = [name for name in types if name not in exclude]
    if not chosen:
        raise ConfigError(f"{where}: no feature columns selected")
    return InputSchema(tuple(column_of(name, types[name], declared, where) for name in chosen))


def column_of(name: str, raw: RawType, declared: Mapping[str, Column], where: str) -> Column:
    """The declared column, or a float one; a text or other non-numeric column must be declared a category."""
    column = declared.get(name, Column(name=name))
    check_type(column, raw, where)
    return column


def check_type(column: Column, raw: RawType, where: str) -> None:
    """Refuse, before any row is read, a source column whose type cannot become ``column``."""
    if raw == "str" and column.type != "category":
        raise SchemaError(
            f"{where}: column {column.name!r} is text; declare it as a category with its list of categories "
            f'(columns.{column.name} = ["...", "..."]) or leave it out of the features',
            column=column.name,
        )
    if raw == "other":
        raise SchemaError(
            f"{where}: column {column.name!r} is neither a number, a boolean nor text; "
            "convert it in the source (e.g. a date to a number) or leave it out of the features",
            column=column.name,
        )
    if raw != "str" and column.type == "category":
        raise SchemaError(
            f"{where}: column {column.name!r} is declared a category but holds {raw} values; "
            "categories are text, so cast it to text in the source or declare it numeric",
            column=column.name,
        )
