"""Opening the databases a scoring job reads and writes: driver choice, timeouts, and errors for people.

A scoring job reaches any database SQLAlchemy does, but fedlearn installs one driver per server:
psycopg 3 for PostgreSQL and PyMySQL for MariaDB and MySQL, so plain ``postgresql://`` and
``mysql://`` URLs use them (:func:`fedlearn.data.sql.driver_url`, as the connectors do). Every
driver error a job meets is turned here into one line that names the database (password hidden)
and the driver's own reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from fedlearn.core.errors import ConfigError
from fedlearn.data.sql import driver_url

CONNECT_TIMEOUT_S = 10
SQLITE_BUSY_TIMEOUT_S = 30.0
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def parse_url(url: str, *, what: str) -> URL:
    """``url`` as a SQLAlchemy URL with fedlearn's driver for its backend; ``what`` names the option."""
    try:
        parsed = make_url(driver_url(url))
    except ArgumentError:
        raise ConfigError(f"`{what}` must be a database URL such as postgresql://USER@HOST/DB; got {url!r}") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError(f"`{what}` must name a SQLite file (sqlite:///PATH); got {shown(parsed)}")
    return parsed


def shown(url: URL) -> str:
    """The URL as people should see it: password hidden, no driver name."""
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


def table_name(name: str, *, what: str) -> tuple[str | None, str]:
    """``(schema, table)`` from ``TABLE`` or ``SCHEMA.TABLE``, each a plain SQL identifier."""
    parts = name.split(".")
    if len(parts) > 2 or not all(_NAME.fullmatch(part) for part in parts):
        raise ConfigError(
            f"`{what}` must be TABLE or SCHEMA.TABLE, each letters, digits or '_' (at most 63); got {name!r}"
        )
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def reason(exc: SQLAlchemyError) -> str:
    """The driver's message on one line."""
    text = str(getattr(exc, "orig", None) or exc)
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


class Database:
    """One engine for a job's source or sink, whose failures are one-line :class:`ConfigError` s."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self.display = shown(url)
        self.dialect = url.get_backend_name()
        connect_args: dict[str, Any] = (
            {"timeout": SQLITE_BUSY_TIMEOUT_S} if self.dialect == "sqlite" else {"connect_timeout": CONNECT_TIMEOUT_S}
        )
        try:
            self.engine: Engine = sa.create_engine(url, connect_args=connect_args)
        except (SQLAlchemyError, ImportError) as exc:
            raise ConfigError(f"cannot use the database {self.display}: {exc}") from None

    @contextmanager
    def transaction(self, doing: str) -> Iterator[Connection]:
        """A transaction that commits on success and rolls back on any exception; ``doing`` words errors."""
        try:
            conn = self.engine.connect()
        except SQLAlchemyError as exc:
            raise ConfigError(f"cannot connect to {self.display}: {reason(exc)}") from None
        try:
            with conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise ConfigError(f"cannot {doing} in {self.display}: {reason(exc)}") from None

    def close(self) -> None:
        self.engine.dispose()
