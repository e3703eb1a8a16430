"""Where a scoring job writes: an upserted predictions table, and the job's progress beside it.

Each chunk of predictions is written in ONE transaction together with the job's progress row, so a
process killed at any instant leaves the two consistent: either the chunk and its progress are both
there, or neither is. Predictions are upserted on the row key (PostgreSQL and SQLite ``ON CONFLICT
DO UPDATE``, MariaDB/MySQL ``ON DUPLICATE KEY UPDATE``), so running a job again updates rows and
never duplicates them.

A key the source holds twice would make an upsert silently keep one of two predictions. Within a
chunk that is seen directly, and a SQL source, read in key order, sees a repeat across chunks as
the next chunk's first key. A file is not in key order, so for its chunks the sink is asked, in the
chunk's transaction, whether this job (its model version, since it started) already wrote any of
the chunk's keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from fedlearn.core.checks import name_mismatch
from fedlearn.core.errors import ConfigError
from fedlearn.registry.databases import Database, reason, table_name

KeyValue = int | str
KeyType = Literal["int", "text"]
DEFAULT_PROGRESS_TABLE = "fedlearn_scoring_progress"
MAX_KEY_CHARS = 255
WRITE_BATCH_ROWS = 1_000
"""Rows per executemany (and keys per duplicate check): well inside every server's parameter limit."""
RESERVED = ("prediction", "model_version", "scored_at")
_TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")  # microseconds on MariaDB too


def utc_now() -> datetime:
    """Now in UTC, without tzinfo: how every timestamp of a job is stored, on every server alike."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkLayout:
    """The predictions table's columns: the key(s), the prediction, optional class probabilities."""

    keys: tuple[str, ...]
    key_types: tuple[KeyType, ...]
    task: Literal["classification", "regression"]
    n_probabilities: int = 0

    def __post_init__(self) -> None:
        clash = sorted(set(self.keys) & {*RESERVED, *self.probability_columns})
        if clash:
            raise ConfigError(f"key column(s) {clash} clash with the predictions table's own columns")

    @property
    def probability_columns(self) -> tuple[str, ...]:
        return tuple(f"probability_{k}" for k in range(self.n_probabilities))

    @property
    def value_columns(self) -> tuple[str, ...]:
        """Every column but the keys: what an upsert overwrites."""
        return ("prediction", *self.probability_columns, "model_version", "scored_at")

    def table(self, name: str, schema: str | None) -> sa.Table:
        keys = [
            sa.Column(key, sa.BigInteger() if kind == "int" else sa.String(MAX_KEY_CHARS), primary_key=True)
            for key, kind in zip(self.keys, self.key_types, strict=True)
        ]
        prediction: sa.types.TypeEngine[Any] = sa.BigInteger() if self.task == "classification" else sa.Double()
        return sa.Table(
            name, sa.MetaData(), *keys,
            sa.Column("prediction", prediction, nullable=False),
            *(sa.Column(column, sa.Double(), nullable=False) for column in self.probability_columns),
            sa.Column("model_version", sa.String(255), nullable=False),
            sa.Column("scored_at", _TIMESTAMP, nullable=False),
            schema=schema,
        )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class JobIdentity:
    """What makes two runs the same job: one may resume the other only if all of these match."""

    model_version: str
    source: str
    target: str
    keys: tuple[str, ...]

    @property
    def job_id(self) -> str:
        text = json.dumps([self.model_version, self.source, self.target, list(self.keys)])
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """How far a job got: rows and chunks committed, the last key committed, when it (re)started."""

    rows_done: int = 0
    chunks_done: int = 0
    last_key: tuple[KeyValue, ...] | None = None
    started_at: datetime
    finished: bool = False

    def after(self, rows: int, last_key: tuple[KeyValue, ...]) -> Progress:
        return replace(self, rows_done=self.rows_done + rows, chunks_done=self.chunks_done + 1, last_key=last_key)


class WriteBack:
    """The predictions table ``table`` and the progress table in the database ``db``."""

    def __init__(self, db: Database, table: str, *, progress_table: str = DEFAULT_PROGRESS_TABLE) -> None:
        self.db = db
        self.schema, self.name = table_name(table, what="write")
        progress_schema, progress_name = table_name(progress_table, what="progress_table")
        self.description = f"{db.display} table {table}"
        self._progress = _progress_table(progress_name, progress_schema or self.schema)
        self._table: sa.Table | None = None
        self._layout: SinkLayout | None = None

    def begin(self, identity: JobIdentity, *, restart: bool) -> Progress:
        """The job's committed progress (creating the progress table if missing), or a fresh start.

        A finished job, a job never seen, and any job under ``restart`` start afresh; the progress
        row is reset in the database only when the first chunk commits.
        """
        _create(self.db, self._progress)
        with self.db.transaction("read the scoring progress") as conn:
            row = conn.execute(sa.select(self._progress).where(self._progress.c.job_id == identity.job_id)).first()
        if row is None or restart or row.finished_at is not None:
            return Progress(started_at=utc_now())
        last = json.loads(row.last_key) if row.last_key is not None else None
        return Progress(
            rows_done=row.rows_done, chunks_done=row.chunks_done, started_at=row.started_at,
            last_key=tuple(last) if last is not None else None,
        )  # fmt: skip

    def prepare(self, layout: SinkLayout) -> None:
        """Create the predictions table, or check that the existing one has exactly the layout's columns."""
        table = layout.table(self.name, self.schema)
        inspector = _inspect(self.db)
        if not inspector.has_table(self.name, schema=self.schema):
            _create(self.db, table)
        else:
            columns = [column["name"] for column in inspector.get_columns(self.name, schema=self.schema)]
            mismatch = name_mismatch(columns, [column.name for column in table.columns])
            if mismatch:
                raise ConfigError(f"the existing table {self.name!r} does not fit these predictions: {mismatch}")
            primary = tuple(inspector.get_pk_constraint(self.name, schema=self.schema)["constrained_columns"])
            if sorted(primary) != sorted(layout.keys):
                raise ConfigError(
                    f"the existing table {self.name!r} must have the primary key {list(layout.keys)}; "
                    f"it has {list(primary) or 'none'}"
                )
        self._table, self._layout = table, layout

    def commit(
        self,
        identity: JobIdentity,
        progress: Progress,
        rows: Sequence[Mapping[str, Any]],
        keys: Sequence[tuple[Any, ...]],
        *,
        check_repeats: bool,
    ) -> None:
        """Upsert one chunk's ``rows`` and record ``progress`` (already advanced past them), in one transaction.

        ``check_repeats`` first asks whether this job already wrote any of ``keys``: needed where the
        source is not read in key order, so that a repeated key need not be adjacent to its twin.
        """
        assert self._table is not None and self._layout is not None, "prepare() comes first"
        table, layout = self._table, self._layout
        with self.db.transaction(f"write the predictions table {self.name!r}") as conn:
            if check_repeats:
                _refuse_rescored(conn, table, layout, identity.model_version, progress.started_at, keys)
            statement = _upsert(self.db.dialect, table, layout.keys, layout.value_columns)
            for start in range(0, len(rows), WRITE_BATCH_ROWS):
                conn.execute(statement, list(rows[start : start + WRITE_BATCH_ROWS]))
            self._record(conn, identity, progress)

    def finish(self, identity: JobIdentity, progress: Progress) -> None:
        """Mark the job finished, so that running it again scores everything afresh."""
        with self.db.transaction("record the scoring progress") as conn:
            self._record(conn, identity, replace(progress, finished=True))

    def _record(self, conn: Connection, identity: JobIdentity, progress: Progress) -> None:
        now = utc_now()
        values = {
            "job_id": identity.job_id, "model_version": identity.model_version, "source": identity.source,
            "target": identity.target, "rows_done": progress.rows_done, "chunks_done": progress.chunks_done,
            "last_key": None if progress.last_key is None else json.dumps(list(progress.last_key)),
            "started_at": progress.started_at, "updated_at": now, "finished_at": now if progress.finished else None,
        }  # fmt: skip
        updated = [column for column in values if column != "job_id"]
        conn.execute(_upsert(self.db.dialect, self._progress, ("job_id",), updated), [values])


def _progress_table(name: str, schema: str | None) -> sa.Table:
    return sa.Table(
        name, sa.MetaData(),
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("model_version", sa.String(255), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("rows_done", sa.BigInteger(), nullable=False),
        sa.Column("chunks_done", sa.BigInteger(), nullable=False),
        sa.Column("last_key", sa.Text()),
        sa.Column("started_at", _TIMESTAMP, nullable=False),
        sa.Column("updated_at", _TIMESTAMP, nullable=False),
        sa.Column("finished_at", _TIMESTAMP),
        schema=schema,
    )  # fmt: skip


def _inspect(db: Database) -> sa.Inspector:
    try:
        return sa.inspect(db.engine)
    except SQLAlchemyError as exc:
        raise ConfigError(f"cannot connect to {db.display}: {reason(exc)}") from None


def _create(db: Database, table: sa.Table) -> None:
    """Create ``table`` unless it exists; another job creating it at the same moment is no error."""
    try:
        table.create(db.engine, checkfirst=True)
    except SQLAlchemyError as exc:
        if not _inspect(db).has_table(table.name, schema=table.schema):
            raise ConfigError(f"cannot create the table {table.name!r} in {db.display}: {reason(exc)}") from None


def _upsert(dialect: str, table: sa.Table, keys: Sequence[str], updated: Sequence[str]) -> Any:
    """An INSERT that, for a key already present, overwrites the ``updated`` columns instead."""
    if dialect in ("postgresql", "sqlite"):
        from sqlalchemy.dialects import postgresql, sqlite

        insert = (postgresql if dialect == "postgresql" else sqlite).insert(table)
        return insert.on_conflict_do_update(index_elements=list(keys), set_={c: insert.excluded[c] for c in updated})
    if dialect in ("mysql", "mariadb"):
        statement = mysql.insert(table)
        return statement.on_duplicate_key_update({c: statement.inserted[c] for c in updated})
    raise ConfigError(f"write-back needs PostgreSQL, MariaDB/MySQL or SQLite; got a {dialect} database")


def _refuse_rescored(
    conn: Connection,
    table: sa.Table,
    layout: SinkLayout,
    version: str,
    started_at: datetime,
    keys: Sequence[tuple[Any, ...]],
) -> None:
    """Refuse a chunk holding a key this job already wrote: the source holds that key more than once."""
    key_columns = [table.c[key] for key in layout.keys]
    target = key_columns[0] if len(key_columns) == 1 else sa.tuple_(*key_columns)
    for start in range(0, len(keys), WRITE_BATCH_ROWS):
        batch = keys[start : start + WRITE_BATCH_ROWS]
        values = [key[0] for key in batch] if len(key_columns) == 1 else list(batch)
        query = (
            sa.select(*key_columns)
            .where(table.c.model_version == version, table.c.scored_at >= started_at, target.in_(values))
            .limit(1)
        )
        found = conn.execute(query).first()
        if found is not None:
            raise ConfigError(
                f"the source holds the key {show_key(tuple(found))} more than once; "
                f"the key column(s) {list(layout.keys)} must identify each row"
            )


def show_key(key: tuple[Any, ...]) -> str:
    """A key as a message shows it: ``17`` or ``('eu', 17)``."""
    return repr(key[0]) if len(key) == 1 else repr(key)
