"""Where a node writes the predictions of a federated scoring task: a table of its own database.

One row per key: the key column(s), ``prediction``, ``model_version`` and ``scored_at`` (Unix
seconds). Each chunk is upserted on the key in one transaction (the database's own insert-or-update
on SQLite, PostgreSQL and MySQL/MariaDB; delete, then insert, elsewhere), so scoring again updates
rows and never duplicates them.

The coordinator names the table; the node decides the database. So the name is checked before it
reaches SQL (letters, digits and ``_``, at most 63 characters), and an existing table is written
only if it has exactly this layout: a scoring task can never overwrite one of the node's data tables.

This is deliberately minimal and isolated: batch scoring's write-back sink replaces it once it lands.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedlearn.core.errors import ConfigError
from fedlearn.data.sources import _driver_url, _hide_password

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
RESERVED = ("prediction", "model_version", "scored_at")


def check_table_name(name: object, what: str = "write table") -> str:
    if not isinstance(name, str) or not _TABLE_NAME.fullmatch(name):
        raise ConfigError(
            f"`{what}` must be letters, digits and _ (at most 63, not starting with a digit); got {name!r}"
        )
    return name


def check_keys(keys: object) -> tuple[str, ...]:
    if not isinstance(keys, list | tuple) or not keys or len(set(keys)) != len(keys):
        raise ConfigError(f"`keys` must name one or more distinct key columns; got {keys!r}")
    for key in keys:
        check_table_name(key, "keys")
        if key in RESERVED:
            raise ConfigError(f"`keys` must not use the prediction table's own columns {list(RESERVED)}; got {key!r}")
    return tuple(keys)


class PredictionTable:
    """The node's prediction table ``name`` in the database at ``url``; created on the first chunk."""

    def __init__(self, url: str, name: str, keys: Sequence[str], *, numeric_prediction: bool) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.exc import SQLAlchemyError

        self.name = check_table_name(name)
        self.keys = check_keys(list(keys))
        self._numeric = numeric_prediction
        self._where = _hide_password(url)
        try:
            self._engine = create_engine(_driver_url(url))
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise ConfigError(f"invalid scoring database URL {self._where}: {exc}") from None
        self._table: Any = None

    def close(self) -> None:
        self._engine.dispose()

    def write(self, keys: dict[str, NDArray[Any]], predictions: NDArray[Any], version: str) -> None:
        """Replace the rows of these keys with these predictions, in one transaction."""
        from sqlalchemy import and_, or_
        from sqlalchemy.exc import SQLAlchemyError

        key_rows = list(zip(*(keys[k].tolist() for k in self.keys), strict=True))
        if len(set(key_rows)) != len(key_rows):
            raise ConfigError(f"dataset rows repeat a key of {list(self.keys)}; each row needs its own key")
        try:
            if self._table is None:
                self._table = self._prepare(keys)
            table = self._table
            now = time.time()
            records = [
                {**dict(zip(self.keys, key, strict=True)), "prediction": value, "model_version": version,
                 "scored_at": now}
                for key, value in zip(key_rows, predictions.tolist(), strict=True)
            ]  # fmt: skip
            upsert = _upsert(table, self.keys, self._engine.dialect.name)
            with self._engine.begin() as conn:
                if upsert is not None:
                    if records:
                        conn.execute(upsert, records)
                    return
                columns = [table.c[k] for k in self.keys]
                for start in range(0, len(key_rows), 500):  # another database: delete, then insert
                    part = key_rows[start : start + 500]
                    if len(columns) == 1:
                        match = columns[0].in_([key[0] for key in part])
                    else:
                        match = or_(*(and_(*(c == v for c, v in zip(columns, key, strict=True))) for key in part))
                    conn.execute(table.delete().where(match))
                if records:
                    conn.execute(table.insert(), records)
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise ConfigError(f"cannot write predictions to {self.name!r} on {self._where}: {reason}") from None

    def _prepare(self, keys: dict[str, NDArray[Any]]) -> Any:
        from sqlalchemy import Column, Float, MetaData, String, Table, inspect

        existing = inspect(self._engine)
        wanted = [*self.keys, *RESERVED]
        if existing.has_table(self.name):
            found = [c["name"] for c in existing.get_columns(self.name)]
            if sorted(found) != sorted(wanted):
                raise ConfigError(
                    f"table {self.name!r} exists with columns {found}, not a prediction table's {wanted}; "
                    "refusing to write into it"
                )
        metadata = MetaData()
        key_columns = [Column(k, _key_type(keys[k]), primary_key=True) for k in self.keys]
        table = Table(
            self.name,
            metadata,
            *key_columns,
            Column("prediction", Float if self._numeric else String(255)),
            Column("model_version", String(255), nullable=False),
            Column("scored_at", Float, nullable=False),
        )
        metadata.create_all(self._engine, checkfirst=True)
        return table


def _upsert(table: Any, keys: Sequence[str], dialect: str) -> Any:
    """The database's own insert-or-update on the key, where it has one (SQLite, PostgreSQL, MySQL/MariaDB)."""
    if dialect in ("sqlite", "postgresql"):
        from sqlalchemy.dialects import postgresql, sqlite

        statement: Any = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
        return statement.on_conflict_do_update(
            index_elements=[table.c[k] for k in keys], set_={c: statement.excluded[c] for c in RESERVED}
        )
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects import mysql

        statement = mysql.insert(table)
        return statement.on_duplicate_key_update({c: statement.inserted[c] for c in RESERVED})
    return None


def _key_type(values: NDArray[Any]) -> Any:
    from sqlalchemy import BigInteger, String

    plain = values.tolist()
    if plain and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in plain):
        return BigInteger
    return String(255)
