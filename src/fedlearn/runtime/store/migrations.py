"""Schema versions: create a fresh store, migrate an older one, refuse a newer one.

The ``meta`` table holds ``schema_version``. ``MIGRATIONS[n]`` turns version ``n`` into ``n + 1``;
each step is frozen history written in plain DDL, never in terms of today's table objects, because
those will change again. All steps and the version bump run in one transaction (both backends have
transactional DDL), so a crash mid-migration leaves the old version intact.

Two processes may open a new store at the same moment (the coordinator and ``fedlearn nodes add``).
Creation and migration therefore run under a lock: SQLite's write lock (``BEGIN IMMEDIATE``) or a
PostgreSQL transaction-scoped advisory lock. The winner creates; the other re-reads and finds it done.

Version history:

- 0: the first prototype. Nodes had no presence columns and runs could not be asked to stop; a run
  was stopped by killing the coordinator.
- 1: ``nodes.last_seen`` and ``nodes.online`` for presence, ``runs.stop_requested`` for a clean stop.
- 2: ``runs.error``, the class name of the error that failed a run, so that a client following the run
  can exit with that error's code (a quorum failure with 4) rather than a generic 1.
- 3: ``nodes.max_examples``, the row count an operator declared for a node: a reply claiming more
  examples is rejected, so a node cannot weight its update beyond the data it holds.
- 4: ``nodes.identity_key``, the node's long-term Ed25519 public key, which signs its secure-aggregation
  keys; registered at enrollment or bound at the node's first session.
- 5: ``checkpoints.ledger``, the run's privacy ledger under differential privacy, written with the
  checkpoint it belongs to, so a resumed run goes on spending from what it had spent; and
  ``runs.privacy_reserved``, the ledger charged for a round before its tasks leave, so a round cut
  short by a crash is charged even though no checkpoint records it.
- 6: the model registry: ``models``, one immutable row per registered version with its package
  blob, lineage and input schema, and ``model_aliases``, names such as ``champion`` for versions.
- 7: standing analytics federations: ``federations`` (definition, schedule, last refresh),
  ``federation_batches`` (each dataset a member added, with its summary blob, so a removal is
  exact), ``federation_members`` (each member's merged summary and staleness) and
  ``federation_models`` (each kept model's learned arrays).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fedlearn.core.errors import StoreError
from fedlearn.runtime.store.connection import Database
from fedlearn.runtime.store.schema import SCHEMA_VERSION, meta, metadata

logger = logging.getLogger(__name__)

Migration = Callable[[Connection], None]

_VERSION_KEY = "schema_version"
_ADVISORY_LOCK_KEY = 0x666C5F73746F7265  # "fl_store": any constant works, it only has to be shared


def _v0_to_v1(conn: Connection) -> None:
    """Add node presence and the stop flag; existing rows start offline and not stopping."""
    postgres = conn.dialect.name == "postgresql"
    timestamp = "TIMESTAMP WITH TIME ZONE" if postgres else "DATETIME"
    false = "false" if postgres else "0"
    conn.exec_driver_sql(f"ALTER TABLE nodes ADD COLUMN last_seen {timestamp}")
    conn.exec_driver_sql(f"ALTER TABLE nodes ADD COLUMN online BOOLEAN DEFAULT {false} NOT NULL")
    conn.exec_driver_sql(f"ALTER TABLE runs ADD COLUMN stop_requested BOOLEAN DEFAULT {false} NOT NULL")


def _v1_to_v2(conn: Connection) -> None:
    """Add the error that failed a run; runs that failed before it existed keep NULL (unknown)."""
    conn.exec_driver_sql("ALTER TABLE runs ADD COLUMN error VARCHAR(64)")


def _v2_to_v3(conn: Connection) -> None:
    """Add each node's declared row count; nodes registered before it have none (NULL: not declared)."""
    conn.exec_driver_sql("ALTER TABLE nodes ADD COLUMN max_examples BIGINT")


def _v3_to_v4(conn: Connection) -> None:
    """Add each node's identity key; nodes registered before it bind one at their next session."""
    conn.exec_driver_sql("ALTER TABLE nodes ADD COLUMN identity_key VARCHAR(64)")


def _v4_to_v5(conn: Connection) -> None:
    """Add each checkpoint's privacy ledger and each run's reserved one; runs before it had no DP (NULL)."""
    conn.exec_driver_sql("ALTER TABLE checkpoints ADD COLUMN ledger TEXT")
    conn.exec_driver_sql("ALTER TABLE runs ADD COLUMN privacy_reserved TEXT")


def _v5_to_v6(conn: Connection) -> None:
    """Add the model registry's two tables; a store before it has registered no model."""
    timestamp = "TIMESTAMP WITH TIME ZONE" if conn.dialect.name == "postgresql" else "DATETIME"
    conn.exec_driver_sql(
        "CREATE TABLE models (name VARCHAR(64) NOT NULL, version INTEGER NOT NULL, kind VARCHAR(16) NOT NULL, "
        "model VARCHAR(200) NOT NULL, task VARCHAR(16) NOT NULL, run_id VARCHAR(32), "
        "package_digest VARCHAR(64) NOT NULL, package_size BIGINT NOT NULL, lineage TEXT NOT NULL, "
        f"input_schema TEXT NOT NULL, created_at {timestamp} NOT NULL, "
        "CONSTRAINT pk_models PRIMARY KEY (name, version), "
        "CONSTRAINT fk_models_package_digest FOREIGN KEY (package_digest) REFERENCES blobs (digest))"
    )
    conn.exec_driver_sql(
        "CREATE TABLE model_aliases (name VARCHAR(64) NOT NULL, alias VARCHAR(64) NOT NULL, "
        f"version INTEGER NOT NULL, updated_at {timestamp} NOT NULL, "
        "CONSTRAINT pk_model_aliases PRIMARY KEY (name, alias), "
        "CONSTRAINT fk_model_aliases_name FOREIGN KEY (name, version) REFERENCES models (name, version))"
    )


# -- version 7: standing analytics federations ----------------------------------------------------
def _v6_to_v7(conn: Connection) -> None:
    """Add the federation tables; no store had federations before, so they start empty."""
    postgres = conn.dialect.name == "postgresql"
    timestamp = "TIMESTAMP WITH TIME ZONE" if postgres else "DATETIME"
    conn.exec_driver_sql(
        f"CREATE TABLE federations (name VARCHAR(64) NOT NULL, definition TEXT NOT NULL, refresh_seconds FLOAT, "
        f"created_at {timestamp} NOT NULL, refreshed_at {timestamp}, report TEXT, "
        "CONSTRAINT pk_federations PRIMARY KEY (name))"
    )
    conn.exec_driver_sql(
        "CREATE TABLE federation_batches (id VARCHAR(32) NOT NULL, federation VARCHAR(64) NOT NULL, "
        "node VARCHAR(64) NOT NULL, dataset VARCHAR(200) NOT NULL, summary_digest VARCHAR(64), row_count BIGINT, "
        f"added_at {timestamp} NOT NULL, summarised_at {timestamp}, "
        "CONSTRAINT pk_federation_batches PRIMARY KEY (id), "
        "CONSTRAINT fk_federation_batches_federation FOREIGN KEY(federation) REFERENCES federations (name) "
        "ON DELETE CASCADE, "
        "CONSTRAINT fk_federation_batches_summary_digest FOREIGN KEY(summary_digest) REFERENCES blobs (digest))"
    )
    conn.exec_driver_sql(
        "CREATE TABLE federation_members (federation VARCHAR(64) NOT NULL, node VARCHAR(64) NOT NULL, "
        f"summary_digest VARCHAR(64), row_count BIGINT NOT NULL, stale TEXT, updated_at {timestamp} NOT NULL, "
        "CONSTRAINT pk_federation_members PRIMARY KEY (federation, node), "
        "CONSTRAINT fk_federation_members_federation FOREIGN KEY(federation) REFERENCES federations (name) "
        "ON DELETE CASCADE, "
        "CONSTRAINT fk_federation_members_summary_digest FOREIGN KEY(summary_digest) REFERENCES blobs (digest))"
    )
    conn.exec_driver_sql(
        "CREATE TABLE federation_models (federation VARCHAR(64) NOT NULL, model VARCHAR(32) NOT NULL, "
        f"params_digest VARCHAR(64), row_count BIGINT NOT NULL, error TEXT, fitted_at {timestamp} NOT NULL, "
        "CONSTRAINT pk_federation_models PRIMARY KEY (federation, model), "
        "CONSTRAINT fk_federation_models_federation FOREIGN KEY(federation) REFERENCES federations (name) "
        "ON DELETE CASCADE, "
        "CONSTRAINT fk_federation_models_params_digest FOREIGN KEY(params_digest) REFERENCES blobs (digest))"
    )


MIGRATIONS: tuple[Migration, ...] = (_v0_to_v1, _v1_to_v2, _v2_to_v3, _v3_to_v4, _v4_to_v5, _v5_to_v6, _v6_to_v7)


def ensure_schema(db: Database) -> None:
    """Bring the store to ``SCHEMA_VERSION``: create it if empty, migrate it if older, refuse it if newer.

    The common case, an up-to-date store, costs one read transaction and takes no lock.
    """
    with db.read() as conn:
        found = _read_version(conn, db)
    if found == SCHEMA_VERSION:
        return
    with db.write() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ADVISORY_LOCK_KEY)))
            if db.schema is not None:
                _enter_schema(conn, db.schema)
        found = _read_version(conn, db)
        if found is None:
            metadata.create_all(conn)
            conn.execute(sa.insert(meta).values(key=_VERSION_KEY, value=str(SCHEMA_VERSION)))
            return
        for step in MIGRATIONS[found:SCHEMA_VERSION]:
            step(conn)
        conn.execute(sa.update(meta).where(meta.c.key == _VERSION_KEY).values(value=str(SCHEMA_VERSION)))


def _enter_schema(conn: Connection, schema: str) -> None:
    """Create the store's schema, and move into it a store that older versions kept in ``public``.

    Older fedlearn put its tables (``nodes``, ``runs``, ...) in ``public``, where they could clash
    with other applications' tables in a shared database. Moving is a rename, so nothing is copied.
    """
    conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    inspector = sa.inspect(conn)
    if schema == "public" or inspector.has_table(meta.name, schema=schema):
        return
    if not inspector.has_table(meta.name, schema="public"):
        return
    ours = sorted(name for name in metadata.tables if inspector.has_table(name, schema="public"))
    for name in ours:
        conn.exec_driver_sql(f'ALTER TABLE public."{name}" SET SCHEMA "{schema}"')
    logger.warning("moved the store's tables %s from schema public to %s", ours, schema)


def _read_version(conn: Connection, db: Database) -> int | None:
    """The stored schema version, or None for a database with none of our tables."""
    inspector = sa.inspect(conn)
    if not inspector.has_table(meta.name):
        ours = sorted(name for name in metadata.tables if inspector.has_table(name))
        if ours:
            raise StoreError(
                f"the database at {db.display} has tables {ours} but no {meta.name!r} table, so it is not a "
                "fedlearn store or is damaged; point the store at an empty database"
            )
        return None
    value = conn.scalar(sa.select(meta.c.value).where(meta.c.key == _VERSION_KEY))
    if value is None or not value.isdigit():
        raise StoreError(
            f"the store at {db.display} has no valid schema_version in its {meta.name!r} table (found {value!r}); "
            "it is damaged: restore it from a backup"
        )
    version = int(value)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"store schema is version {version} but this fedlearn supports up to {SCHEMA_VERSION}; "
            f"upgrade fedlearn (store: {db.display})"
        )
    return version
