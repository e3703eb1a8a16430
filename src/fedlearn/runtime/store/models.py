"""The model registry's rows: immutable versions with their package blobs, and movable aliases.

A version is written once, in one transaction with its package blob, and never updated or
deleted: whoever scored with ``churn/3`` can always fetch exactly ``churn/3`` again. Its number is
the next after the name's highest, chosen inside the writing transaction: SQLite's write lock
serialises writers, and on PostgreSQL a transaction-scoped advisory lock on the name does, so two
registrations of one name at once get two numbers rather than a collision.

Aliases are the only thing that moves. An alias names one version of one model, must start with
a letter (so ``churn@3`` is always version 3), and ``latest`` is reserved for the newest version.
The foreign key from an alias to its version means an alias can never point at nothing.

The bytes a package holds are the registry's business (``fedlearn.registry``); here they are a
blob, written by a function of the version number, since the package records its own version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from fedlearn.core.checks import check_int, check_name
from fedlearn.core.errors import ConfigError, NotFoundError
from fedlearn.runtime.store import blobs
from fedlearn.runtime.store.records import ModelRecord
from fedlearn.runtime.store.schema import model_aliases, models, utcnow

LATEST = "latest"
"""The alias every model has: its newest version. It cannot be set or deleted."""


def check_alias(alias: object) -> str:
    name = check_name("alias", alias, letter_first=True)
    if name == LATEST:
        raise ConfigError(f"alias {LATEST!r} always means the newest version; choose another alias name")
    return name


def add_model(
    conn: Connection,
    name: str,
    *,
    kind: str,
    model: str,
    task: str,
    run_id: str | None,
    lineage: dict[str, Any],
    input_schema: list[dict[str, Any]],
    created_at: datetime,
    package: Callable[[int], bytes],
    chunk_size: int,
) -> ModelRecord:
    """Register the next version of ``name``; ``package(version)`` gives its bytes."""
    check_name("model name", name)
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key(name))))
    version = (conn.scalar(sa.select(sa.func.max(models.c.version)).where(models.c.name == name)) or 0) + 1
    data = package(version)
    values = {
        "name": name,
        "version": version,
        "kind": kind,
        "model": model[:200],
        "task": task,
        "run_id": run_id,
        "package_digest": blobs.put_blob(conn, data, chunk_size=chunk_size),
        "package_size": len(data),
        "lineage": json.dumps(lineage, sort_keys=True),
        "input_schema": json.dumps(input_schema),
        "created_at": created_at,
    }
    conn.execute(sa.insert(models).values(**values))
    return get_model(conn, name, version)


def list_models(conn: Connection, name: str | None = None) -> list[ModelRecord]:
    """Every version, by name then version (only ``name``'s, if given), with its aliases."""
    query = sa.select(models).order_by(models.c.name, models.c.version)
    alias_query = sa.select(model_aliases).order_by(model_aliases.c.alias)
    if name is not None:
        query = query.where(models.c.name == check_name("model name", name))
        alias_query = alias_query.where(model_aliases.c.name == name)
    aliases: dict[tuple[str, int], list[str]] = {}
    for row in conn.execute(alias_query):
        aliases.setdefault((row.name, row.version), []).append(row.alias)
    found = [_record(row, tuple(aliases.get((row.name, row.version), ()))) for row in conn.execute(query)]
    if name is not None and not found:
        raise _unknown(name)
    return found


def get_model(conn: Connection, name: str, version: int) -> ModelRecord:
    check_name("model name", name)
    check_int("version", version, low=1)
    row = conn.execute(sa.select(models).where(models.c.name == name, models.c.version == version)).first()
    if row is None:
        if conn.scalar(sa.select(sa.func.count()).where(models.c.name == name)) == 0:
            raise _unknown(name)
        raise NotFoundError(f"model {name!r} has no version {version}; `fedlearn models show {name}` lists them")
    query = sa.select(model_aliases.c.alias).where(model_aliases.c.name == name, model_aliases.c.version == version)
    return _record(row, tuple(sorted(conn.scalars(query))))


def resolve(conn: Connection, name: str, selector: str | int | None = None) -> int:
    """The version ``selector`` means: a number, an alias, or ``None``/``latest`` for the newest."""
    check_name("model name", name)
    if isinstance(selector, int) or (isinstance(selector, str) and selector.isdigit()):
        return get_model(conn, name, int(selector)).version
    if selector is None or selector == LATEST:
        newest = conn.scalar(sa.select(sa.func.max(models.c.version)).where(models.c.name == name))
        if newest is None:
            raise _unknown(name)
        return int(newest)
    alias = check_name("alias", selector, letter_first=True)
    version = conn.scalar(
        sa.select(model_aliases.c.version).where(model_aliases.c.name == name, model_aliases.c.alias == alias)
    )
    if version is None:
        if not _exists(conn, name):
            raise _unknown(name)
        raise NotFoundError(f"model {name!r} has no alias {alias!r}; `fedlearn models show {name}` lists them")
    return int(version)


def set_alias(conn: Connection, name: str, alias: str, version: int) -> None:
    """Point ``alias`` at ``version`` of ``name``, creating or moving it."""
    check_alias(alias)
    get_model(conn, name, version)  # an alias may only name a version that exists
    now = utcnow()
    where = (model_aliases.c.name == name, model_aliases.c.alias == alias)
    if conn.execute(sa.update(model_aliases).where(*where).values(version=version, updated_at=now)).rowcount == 0:
        conn.execute(sa.insert(model_aliases).values(name=name, alias=alias, version=version, updated_at=now))


def delete_alias(conn: Connection, name: str, alias: str) -> None:
    check_alias(alias)
    deleted = conn.execute(sa.delete(model_aliases).where(model_aliases.c.name == name, model_aliases.c.alias == alias))
    if deleted.rowcount == 0:
        if not _exists(conn, name):
            raise _unknown(name)
        raise NotFoundError(f"model {name!r} has no alias {alias!r}; `fedlearn models show {name}` lists them")


def _lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for one model name."""
    return int.from_bytes(hashlib.sha256(f"fedlearn.models:{name}".encode()).digest()[:8], "big", signed=True)


def _exists(conn: Connection, name: str) -> bool:
    return conn.execute(sa.select(models.c.version).where(models.c.name == name).limit(1)).first() is not None


def _unknown(name: str) -> NotFoundError:
    return NotFoundError(f"no model named {name!r} in this registry; `fedlearn models list` shows the models")


def _record(row: Row[Any], aliases: tuple[str, ...]) -> ModelRecord:
    return ModelRecord(
        name=row.name,
        version=row.version,
        kind=row.kind,
        model=row.model,
        task=row.task,
        run_id=row.run_id,
        digest=row.package_digest,
        size=row.package_size,
        lineage=json.loads(row.lineage),
        input_schema=json.loads(row.input_schema),
        created_at=row.created_at,
        aliases=aliases,
    )
