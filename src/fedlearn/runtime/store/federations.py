"""Standing analytics federations: their definitions, batches, members' summaries and fitted models.

The store keeps bytes and counts only; what the bytes mean (a summary's safetensors, a model's
learned arrays) is :mod:`fedlearn.analytics.federation`'s business. Every change to a federation is
one :class:`FederationUpdate`, written in one transaction: a batch added, its member's new merged
summary and the models refitted from it commit together or not at all, so a coordinator killed
mid-change leaves the federation as it was before or after, never in between.

Blobs are content-addressed and immutable (see :mod:`.blobs`); the rows here refer to them by
digest, so ``delete_unreferenced_blobs`` keeps every summary and model a federation still uses.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from fedlearn.core.errors import ConfigError, NotFoundError
from fedlearn.runtime.store import blobs
from fedlearn.runtime.store.schema import (
    federation_batches,
    federation_members,
    federation_models,
    federations,
    utcnow,
)
from fedlearn.runtime.tokens import NODE_NAME_PATTERN

DATASET_NAME_LENGTH = 200  # the width of ``federation_batches.dataset``


@dataclass(frozen=True, slots=True, kw_only=True)
class FederationRecord:
    """A federation's definition (JSON text), schedule and last refresh; ``report`` is JSON text or None."""

    name: str
    definition: str
    refresh_seconds: float | None
    created_at: datetime
    refreshed_at: datetime | None
    report: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchRecord:
    """One dataset a member contributes; ``summary_digest`` is None until the node has summarised it."""

    id: str
    node: str
    dataset: str
    summary_digest: str | None
    rows: int | None
    added_at: datetime
    summarised_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberRecord:
    """A member's merged summary (its batches' merge) and, when the last refresh missed it, why."""

    node: str
    summary_digest: str | None
    rows: int
    stale: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRecord:
    """A kept model: the digest of its learned arrays, or the ``error`` that kept it from being fitted."""

    model: str
    params_digest: str | None
    rows: int
    error: str | None
    fitted_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class FederationState:
    """A federation and everything it holds, as of one snapshot of the store."""

    federation: FederationRecord
    batches: list[BatchRecord]
    members: list[MemberRecord]
    models: list[ModelRecord]


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberState:
    """A member's new merged summary (safetensors bytes; None for no summarised batch) and staleness."""

    summary: bytes | None
    rows: int
    stale: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelState:
    """A model's new learned arrays (safetensors bytes), or None with the ``error`` that prevented them."""

    params: bytes | None
    rows: int
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FederationUpdate:
    """Everything one change to a federation writes, applied in one transaction by :func:`update_federation`.

    ``added`` are ``(batch id, node, dataset)``; ``summaries`` give batches (new or old) their
    summary bytes and row count; ``members`` replace members' states and ``dropped_members``
    delete them; ``models`` replace the kept models' states; ``refreshed`` is the report (JSON
    text) of a refresh from the nodes, which also sets ``refreshed_at``.
    """

    added: Sequence[tuple[str, str, str]] = ()
    removed: Sequence[str] = ()
    summaries: Mapping[str, tuple[bytes, int]] = field(default_factory=dict)
    members: Mapping[str, MemberState] = field(default_factory=dict)
    dropped_members: Sequence[str] = ()
    models: Mapping[str, ModelState] = field(default_factory=dict)
    refreshed: str | None = None


def check_federation_name(name: object) -> str:
    """``name`` if it is 1-64 characters of letters, digits, ``.``, ``_`` and ``-`` (safe in a URL path)."""
    if not isinstance(name, str) or NODE_NAME_PATTERN.fullmatch(name) is None:
        raise ConfigError(f"federation name must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-'; got {name!r}")
    return name


def new_batch_id() -> str:
    return uuid.uuid4().hex


def create_federation(
    conn: Connection,
    name: str,
    definition: str,
    *,
    refresh_seconds: float | None,
    batches: Sequence[tuple[str, str]],
) -> None:
    """Record a new federation with its first batches (``(node, dataset)``, not yet summarised)."""
    check_federation_name(name)
    if conn.execute(sa.select(federations.c.name).where(federations.c.name == name)).first() is not None:
        raise ConfigError(f"federation {name!r} already exists; delete it first or choose another name")
    now = utcnow()
    conn.execute(
        sa.insert(federations).values(
            name=name, definition=definition, refresh_seconds=refresh_seconds, created_at=now, refreshed_at=None
        )
    )
    for node, dataset in batches:
        _insert_batch(conn, name, new_batch_id(), node, dataset, now)
    for node in dict.fromkeys(node for node, _ in batches):
        conn.execute(
            sa.insert(federation_members).values(
                federation=name, node=node, summary_digest=None, row_count=0, updated_at=now
            )
        )


def get_federation(conn: Connection, name: str) -> FederationRecord:
    row = conn.execute(sa.select(federations).where(federations.c.name == name)).first()
    if row is None:
        raise NotFoundError(
            f"no federation named {name!r} on this coordinator; `fedlearn analytics federation list` shows them"
        )
    return _federation(row)


def list_federations(conn: Connection) -> list[FederationRecord]:
    """Every federation, oldest first."""
    query = sa.select(federations).order_by(federations.c.created_at, federations.c.name)
    return [_federation(row) for row in conn.execute(query)]


def due_federations(conn: Connection) -> list[str]:
    """The scheduled federations whose next refresh is due now (never refreshed: due at once)."""
    now = utcnow()
    query = sa.select(federations.c.name, federations.c.refresh_seconds, federations.c.refreshed_at).where(
        federations.c.refresh_seconds.is_not(None)
    )
    return [
        row.name
        for row in conn.execute(query.order_by(federations.c.name))
        if row.refreshed_at is None or row.refreshed_at + timedelta(seconds=row.refresh_seconds) <= now
    ]


def delete_federation(conn: Connection, name: str) -> None:
    """Delete a federation with its batches, members and models; its blobs become unreferenced."""
    get_federation(conn, name)
    for table in (federation_models, federation_members, federation_batches):  # foreign keys first
        conn.execute(sa.delete(table).where(table.c.federation == name))
    conn.execute(sa.delete(federations).where(federations.c.name == name))


def list_batches(conn: Connection, name: str) -> list[BatchRecord]:
    """The federation's batches in the order they were added (those added together by node and dataset)."""
    get_federation(conn, name)
    query = (
        sa.select(federation_batches)
        .where(federation_batches.c.federation == name)
        .order_by(
            federation_batches.c.added_at,
            federation_batches.c.node,  # batches created together: by node, then dataset
            federation_batches.c.dataset,
            federation_batches.c.id,
        )
    )
    return [
        BatchRecord(
            id=r.id,
            node=r.node,
            dataset=r.dataset,
            summary_digest=r.summary_digest,
            rows=r.row_count,
            added_at=r.added_at,
            summarised_at=r.summarised_at,
        )
        for r in conn.execute(query)
    ]


def list_members(conn: Connection, name: str) -> list[MemberRecord]:
    get_federation(conn, name)
    query = (
        sa.select(federation_members).where(federation_members.c.federation == name).order_by(federation_members.c.node)
    )
    return [
        MemberRecord(
            node=r.node, summary_digest=r.summary_digest, rows=r.row_count, stale=r.stale, updated_at=r.updated_at
        )
        for r in conn.execute(query)
    ]


def list_models(conn: Connection, name: str) -> list[ModelRecord]:
    get_federation(conn, name)
    query = (
        sa.select(federation_models).where(federation_models.c.federation == name).order_by(federation_models.c.model)
    )
    return [
        ModelRecord(
            model=r.model, params_digest=r.params_digest, rows=r.row_count, error=r.error, fitted_at=r.fitted_at
        )
        for r in conn.execute(query)
    ]


def update_federation(conn: Connection, name: str, update: FederationUpdate, *, chunk_size: int) -> None:
    """Apply ``update`` to the federation; the caller's transaction makes it all or nothing."""
    get_federation(conn, name)
    now = utcnow()
    for batch_id, node, dataset in update.added:
        _insert_batch(conn, name, batch_id, node, dataset, now)
    for batch_id in update.removed:
        result = conn.execute(
            sa.delete(federation_batches).where(
                federation_batches.c.federation == name, federation_batches.c.id == batch_id
            )
        )
        if result.rowcount == 0:
            raise NotFoundError(f"federation {name!r} has no batch {batch_id!r}; `show` lists its batches")
    for batch_id, (data, rows) in update.summaries.items():
        digest = blobs.put_blob(conn, data, chunk_size=chunk_size)
        result = conn.execute(
            sa.update(federation_batches)
            .where(federation_batches.c.federation == name, federation_batches.c.id == batch_id)
            .values(summary_digest=digest, row_count=rows, summarised_at=now)
        )
        if result.rowcount == 0:
            raise NotFoundError(f"federation {name!r} has no batch {batch_id!r}; `show` lists its batches")
    for node in update.dropped_members:
        conn.execute(
            sa.delete(federation_members).where(
                federation_members.c.federation == name, federation_members.c.node == node
            )
        )
    for node, state in update.members.items():
        values = {
            "summary_digest": _put(conn, state.summary, chunk_size),
            "row_count": state.rows,
            "stale": state.stale,
            "updated_at": now,
        }
        _upsert(conn, federation_members, {"federation": name, "node": node}, values)
    for model, model_state in update.models.items():
        values = {
            "params_digest": _put(conn, model_state.params, chunk_size),
            "row_count": model_state.rows,
            "error": model_state.error,
            "fitted_at": now,
        }
        _upsert(conn, federation_models, {"federation": name, "model": model}, values)
    if update.refreshed is not None:
        conn.execute(
            sa.update(federations).where(federations.c.name == name).values(refreshed_at=now, report=update.refreshed)
        )


def _insert_batch(conn: Connection, name: str, batch_id: str, node: str, dataset: str, now: datetime) -> None:
    if not isinstance(dataset, str) or not 1 <= len(dataset) <= DATASET_NAME_LENGTH:
        raise ConfigError(f"dataset name must be 1-{DATASET_NAME_LENGTH} characters; got {dataset!r}")
    conn.execute(
        sa.insert(federation_batches).values(
            id=batch_id,
            federation=name,
            node=node,
            dataset=dataset,
            summary_digest=None,
            row_count=None,
            added_at=now,
            summarised_at=None,
        )
    )


def _put(conn: Connection, data: bytes | None, chunk_size: int) -> str | None:
    return None if data is None else blobs.put_blob(conn, data, chunk_size=chunk_size)


def _upsert(conn: Connection, table: sa.Table, key: Mapping[str, str], values: Mapping[str, Any]) -> None:
    where = [table.c[k] == v for k, v in key.items()]
    if conn.execute(sa.update(table).where(*where).values(**values)).rowcount == 0:
        conn.execute(sa.insert(table).values(**key, **values))


def _federation(row: Row[Any]) -> FederationRecord:
    return FederationRecord(
        name=row.name,
        definition=row.definition,
        refresh_seconds=row.refresh_seconds,
        created_at=row.created_at,
        refreshed_at=row.refreshed_at,
        report=row.report,
    )
