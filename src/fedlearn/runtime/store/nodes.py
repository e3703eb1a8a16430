"""Registered nodes: tokens issued once and kept only as hashes, revocation, and presence."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fedlearn.core.checks import check_int
from fedlearn.core.errors import NotFoundError, StoreError
from fedlearn.runtime.store.records import NodeRecord
from fedlearn.runtime.store.schema import nodes, utcnow
from fedlearn.runtime.tokens import hash_token, is_valid_node_name, new_token, token_matches, validate_node_name

IDENTITY_KEY_BYTES = 32
"""A raw Ed25519 public key."""

# Compared against when the name is unknown or revoked, so a refusal costs the same time as a check.
_NO_MATCH = hash_token("fedlearn: no such node")


def add_node(conn: Connection, name: str, *, max_examples: int | None = None, identity_key: bytes | None = None) -> str:
    """Register ``name`` (or re-register a revoked one) and return its token, the only time it is seen.

    ``max_examples`` declares how many rows the node holds; None leaves it undeclared.
    ``identity_key`` pins the node's Ed25519 public key; None lets its first session bind one.
    """
    name = validate_node_name(name)
    _check_max_examples(max_examples)
    key_hex = None if identity_key is None else _check_identity_key(identity_key)
    row = conn.execute(sa.select(nodes.c.revoked_at).where(nodes.c.name == name).with_for_update()).first()
    if row is not None and row.revoked_at is None:
        raise StoreError(
            f"node {name!r} is already registered; to issue it a new token run `fedlearn nodes rotate {name}`, "
            f"or revoke it first with `fedlearn nodes revoke {name}`"
        )
    token = new_token()
    values = {
        "token_sha256": hash_token(token),
        "created_at": utcnow(),
        "revoked_at": None,
        "last_seen": None,
        "online": False,
        "max_examples": max_examples,
        "identity_key": key_hex,
    }
    if row is None:
        conn.execute(sa.insert(nodes).values(name=name, **values))
    else:
        conn.execute(sa.update(nodes).where(nodes.c.name == name).values(**values))
    return token


def rotate_token(conn: Connection, name: str) -> str:
    """Replace an active node's token; the old one stops working when this commits."""
    name = validate_node_name(name)
    token = new_token()
    _update(conn, name, token_sha256=hash_token(token))
    return token


def declare_rows(conn: Connection, name: str, max_examples: int | None) -> None:
    """Set (or, with None, clear) the row count declared for an active node."""
    _check_max_examples(max_examples)
    _update(conn, validate_node_name(name), max_examples=max_examples)


def declared_rows(conn: Connection) -> dict[str, int]:
    """Each active node's declared row count, for the nodes that have one."""
    query = sa.select(nodes.c.name, nodes.c.max_examples).where(
        nodes.c.revoked_at.is_(None), nodes.c.max_examples.is_not(None)
    )
    return {row.name: int(row.max_examples) for row in conn.execute(query)}


def set_identity_key(conn: Connection, name: str, identity_key: bytes | None) -> None:
    """Pin an active node's identity key, or with None forget it so that its next session binds a new one."""
    key_hex = None if identity_key is None else _check_identity_key(identity_key)
    _update(conn, validate_node_name(name), identity_key=key_hex)


def bind_identity_key(conn: Connection, name: str, identity_key: bytes) -> str | None:
    """Bind the key a node presents to it on first use; the reason for refusing a different one, else None.

    The first key an authenticated node presents is kept (trust on first use, under its token);
    from then on only that key is accepted, so a stolen token alone cannot impersonate the node in
    secure aggregation. An operator replaces a key on purpose with ``fedlearn nodes identity``.
    """
    key_hex = _check_identity_key(identity_key)
    row = conn.execute(
        sa.select(nodes.c.identity_key).where(nodes.c.name == name, nodes.c.revoked_at.is_(None)).with_for_update()
    ).first()
    if row is None:
        return f"node {name!r} is not registered or is revoked"
    if row.identity_key is None:
        conn.execute(sa.update(nodes).where(nodes.c.name == name).values(identity_key=key_hex))
        return None
    if row.identity_key != key_hex:
        return (
            f"node {name} presented identity key {key_hex[:16]}..., but {row.identity_key[:16]}... is registered for "
            f"it; if the node's key was replaced on purpose, run `fedlearn nodes identity {name} --forget` on the "
            "coordinator's host"
        )
    return None


def identity_keys(conn: Connection) -> dict[str, bytes]:
    """Each active node's registered identity key, for the nodes that have one."""
    query = sa.select(nodes.c.name, nodes.c.identity_key).where(
        nodes.c.revoked_at.is_(None), nodes.c.identity_key.is_not(None)
    )
    return {row.name: bytes.fromhex(row.identity_key) for row in conn.execute(query)}


def _check_identity_key(identity_key: bytes) -> str:
    if not isinstance(identity_key, bytes) or len(identity_key) != IDENTITY_KEY_BYTES:
        size = len(identity_key) if isinstance(identity_key, bytes) else type(identity_key).__name__
        raise StoreError(f"an identity key is a raw {IDENTITY_KEY_BYTES}-byte Ed25519 public key; got {size}")
    return identity_key.hex()


def _check_max_examples(max_examples: int | None) -> None:
    if max_examples is not None:
        check_int("max_examples", max_examples, low=1)


def revoke_node(conn: Connection, name: str) -> None:
    """Refuse the node from now on; revoking twice is harmless. The row stays, shown as revoked."""
    name = validate_node_name(name)
    active = sa.update(nodes).where(nodes.c.name == name, nodes.c.revoked_at.is_(None))
    result = conn.execute(active.values(revoked_at=utcnow(), online=False))
    if result.rowcount == 0 and not _exists(conn, name):
        raise NotFoundError(f"node {name!r} is not registered; `fedlearn nodes list` shows the registered nodes")


def mark_node(conn: Connection, name: str, *, online: bool) -> None:
    """Record that the node was just heard from (``online=True``) or has gone away.

    Only an active node can come online, but any registered node can go offline: a revoked node's
    session ends after its revocation commits, and recording that is no error.
    """
    _update(conn, validate_node_name(name), only_active=online, last_seen=utcnow(), online=online)


def mark_all_nodes_offline(conn: Connection) -> int:
    """Set every node offline and return how many were online.

    A coordinator killed without warning leaves its nodes marked online; it calls this on start,
    before any node can reconnect.
    """
    return conn.execute(sa.update(nodes).where(nodes.c.online.is_(True)).values(online=False)).rowcount


def _update(conn: Connection, name: str, *, only_active: bool = True, **values: object) -> None:
    query = sa.update(nodes).where(nodes.c.name == name)
    if only_active:
        query = query.where(nodes.c.revoked_at.is_(None))
    if conn.execute(query.values(**values)).rowcount == 0:
        state = "is revoked" if _exists(conn, name) else "is not registered"
        raise StoreError(f"node {name!r} {state}; register it with `fedlearn nodes add {name}`")


def _exists(conn: Connection, name: str) -> bool:
    return conn.execute(sa.select(nodes.c.name).where(nodes.c.name == name)).first() is not None


def authenticate(conn: Connection, name: str, token: str) -> bool:
    """Whether ``token`` is the current token of the active node ``name``.

    Unknown, revoked and malformed names all take the same path as a wrong token, and the
    comparison is constant-time, so a caller learns nothing from the answer but yes or no.
    """
    row = None
    if is_valid_node_name(name):
        row = conn.execute(
            sa.select(nodes.c.token_sha256).where(nodes.c.name == name, nodes.c.revoked_at.is_(None))
        ).first()
    matches = token_matches(token if isinstance(token, str) else "", row.token_sha256 if row else _NO_MATCH)
    return matches and row is not None


def list_nodes(conn: Connection) -> list[NodeRecord]:
    rows = conn.execute(sa.select(nodes).order_by(nodes.c.name))
    return [
        NodeRecord(
            name=row.name,
            created_at=row.created_at,
            revoked=row.revoked_at is not None,
            last_seen=row.last_seen,
            status="online" if row.online and row.revoked_at is None else "offline",
            max_examples=row.max_examples,
            identity_key=row.identity_key,
        )
        for row in rows
    ]
