"""Opening the store's database: which URLs mean what, SQLite's settings, and errors for people.

Every transaction goes through :meth:`Database.read` or :meth:`Database.write`, so driver errors are
turned into one-line :class:`StoreError` messages in exactly one place, with the password hidden.

SQLite needs two kinds of transaction. Python's ``sqlite3`` module is told not to manage
transactions itself (it would skip BEGIN before DDL and SELECT), and we emit ``BEGIN DEFERRED``
for reads and ``BEGIN IMMEDIATE`` for writes. Taking the write lock up front means two writers
queue on the busy timeout instead of deadlocking when both try to upgrade a read lock. On
PostgreSQL, reads run at REPEATABLE READ so a checkpoint and its history are read from one snapshot.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from fedlearn.core.errors import ConfigError, StoreError

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 30.0
POSTGRES_CONNECT_TIMEOUT_S = 10
DEFAULT_POSTGRES_SCHEMA = "fedlearn"
"""The PostgreSQL schema the store's tables live in, so they cannot clash with others in a shared database."""
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_WRITE = "fedlearn_write"  # execution option marking a transaction that will write


def parse_store_url(url: str | os.PathLike[str]) -> URL:
    """Turn a store location into a SQLAlchemy URL.

    A plain path is a SQLite file; ``postgresql://`` (or ``postgres://``) uses the psycopg 3 driver,
    the one fedlearn installs, and keeps the tables in the schema named by ``?schema=NAME``
    (``fedlearn`` by default), selected through the connection's ``search_path``. An in-memory
    SQLite database is refused: it would vanish on exit.
    """
    text = os.fspath(url)
    if "://" not in text:
        return URL.create("sqlite", database=str(Path(text).expanduser().resolve()))
    try:
        parsed = make_url(text)
    except ArgumentError as exc:
        raise ConfigError(f"store URL {text!r} is malformed: {exc}") from exc
    backend = "postgresql" if parsed.get_backend_name() == "postgres" else parsed.get_backend_name()
    if backend == "postgresql":
        return _in_schema(parsed.set(drivername="postgresql+psycopg"))
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ConfigError(
                f"store URL {text!r} names an in-memory SQLite database, which loses everything on exit; "
                "give a file, e.g. sqlite:///fedlearn.db"
            )
        return parsed.set(drivername="sqlite")
    raise ConfigError(
        f"store URL must be sqlite:///PATH, a file path or postgresql://USER@HOST/DB; got {describe_url(parsed)}"
    )


def postgres_schema(url: URL) -> str | None:
    """The schema a parsed PostgreSQL store URL keeps its tables in; None for SQLite."""
    options = url.query.get("options", "")
    text = options if isinstance(options, str) else " ".join(options)
    match = re.search(r"-csearch_path=([a-z0-9_]+)", text)
    return match.group(1) if match else None


def _in_schema(url: URL) -> URL:
    """Move ``?schema=NAME`` into the connection's ``search_path``, which every statement then obeys."""
    schema = url.query.get("schema", DEFAULT_POSTGRES_SCHEMA)
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(
            f"the store URL's schema must be 1-63 lowercase letters, digits or '_', not starting with a digit; "
            f"got {schema!r}"
        )
    options = url.query.get("options", "")
    if not isinstance(options, str) or "search_path" in options:
        raise ConfigError("choose the store's PostgreSQL schema with ?schema=NAME in its URL, not with search_path")
    merged = f"{options} -csearch_path={schema}".strip()
    return url.difference_update_query(["schema"]).update_query_dict({"options": merged})


def describe_url(url: URL) -> str:
    """The URL as people should see it: password hidden, driver name and schema as they wrote them."""
    shown = url.set(drivername=url.get_backend_name())
    schema = postgres_schema(url)
    if schema is not None:
        shown = shown.difference_update_query(["options"])
        if schema != DEFAULT_POSTGRES_SCHEMA:
            shown = shown.update_query_dict({"schema": schema})
    return shown.render_as_string(hide_password=True)


def _reason(exc: DBAPIError) -> str:
    """The driver's message on one line; psycopg appends a hint on a second line that we replace."""
    text = str(exc.orig) if exc.orig is not None else str(exc)
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc.orig).__name__


class Database:
    """An engine plus the two transaction shapes the store uses."""

    def __init__(self, url: URL) -> None:
        self.display = describe_url(url)
        self.is_sqlite = url.get_backend_name() == "sqlite"
        self.schema = postgres_schema(url)
        connect_args: dict[str, Any]
        if self.is_sqlite:
            _keep_private(str(url.database))
            connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        else:
            connect_args = {} if "connect_timeout" in url.query else {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
        self.engine: Engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=not self.is_sqlite)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _configure_sqlite)
            event.listen(self.engine, "begin", _begin_sqlite)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A transaction that only reads, seeing one consistent snapshot."""
        with self._transaction(write=False) as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that writes; it commits on success and rolls back on any exception."""
        with self._transaction(write=True) as conn:
            yield conn

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Connection]:
        try:
            conn = self.engine.connect()
        except DBAPIError as exc:
            reason = _reason(exc)
            if self.is_sqlite:
                hint = "does its directory exist and may this user write to it?"
            elif "FATAL:" in reason:  # the server answered, and refused
                hint = "check the user, password and database name in the URL"
            else:
                hint = "is the server running?"
            raise StoreError(f"cannot connect to the store at {self.display}: {reason}; {hint}") from exc
        options: dict[str, Any] = {_WRITE: write}
        if not write and not self.is_sqlite:
            options["isolation_level"] = "REPEATABLE READ"
        try:
            with conn.execution_options(**options) as tx_conn, tx_conn.begin():
                yield tx_conn
        except DBAPIError as exc:
            raise StoreError(f"the store at {self.display} failed: {_reason(exc)}") from exc

    def close(self) -> None:
        self.engine.dispose()


def _keep_private(path: str) -> None:
    """Create a new SQLite file 0600, and warn when an existing one is readable by others.

    The store holds models and token hashes. SQLite would create the file under the process's
    umask (usually 0644) and gives its ``-wal`` and ``-shm`` files the database file's mode, so
    creating the file first, empty, makes all three private. An existing file is the operator's:
    it is not changed behind their back, but they are told how to fix it.
    """
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return
    except FileExistsError:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return  # SQLite's own open reports it, with a hint
    if mode & 0o077:
        logger.warning("the store %s is readable by other users (mode %04o); run `chmod 600 %s`", path, mode, path)


def _configure_sqlite(dbapi_conn: Any, _record: Any) -> None:
    """Per-connection SQLite settings; PRAGMAs must run outside a transaction, hence here.

    WAL lets readers (the dashboard) run while the coordinator writes; ``synchronous=FULL`` makes
    each commit durable even across power loss, at one fsync per commit (one checkpoint per round).
    """
    dbapi_conn.isolation_level = None  # we emit BEGIN ourselves, see _begin_sqlite
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _enable_wal(cursor: Any) -> None:
    """Switch to WAL, retrying: the switch needs an exclusive lock and SQLite's busy handler does not
    wait for it, so two processes opening a brand-new store at once would otherwise see "locked".
    The mode is stored in the file, so this only ever contends while a store is being created.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _begin_sqlite(conn: Connection) -> None:
    mode = "IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")
