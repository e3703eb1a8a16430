"""Content-addressed blobs, stored as fixed-size chunks and verified by sha256 on every read.

Chunks keep each row far below PostgreSQL's 1 GB ``bytea`` limit and SQLite's 1 GB string limit,
so a blob of any size fits, and a blob streams in and out holding one chunk at a time. Every
function here runs inside a transaction the caller owns, so a blob and the rows that refer to it
commit together or not at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from fedlearn.core.errors import ConfigError, StoreError
from fedlearn.runtime.store.schema import blob_chunks, blobs, metadata, utcnow

DEFAULT_CHUNK_SIZE = 16 * 2**20
MAX_CHUNK_SIZE = 256 * 2**20

BlobData = bytes | bytearray | memoryview | Iterable[bytes | bytearray | memoryview]


def check_chunk_size(chunk_size: int) -> int:
    if not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ConfigError(f"`chunk_size` must be an int in [1, {MAX_CHUNK_SIZE}] bytes; got {chunk_size!r}")
    return chunk_size


def put_blob(conn: Connection, data: BlobData, *, chunk_size: int) -> str:
    """Store ``data`` (bytes, or an iterable of byte chunks of any sizes) and return its sha256 hex.

    Storing content that is already present writes nothing. Bytes are hashed first so a duplicate
    costs no writes; an iterable can be read only once, so its chunks are written as they arrive
    and dropped again if the digest turns out to be known.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data).cast("B")
        digest = hashlib.sha256(view).hexdigest()
        if _hold_existing(conn, digest):
            return digest
        data = [view]
    return _write_stream(conn, _rechunk(data, chunk_size))


def _hold_existing(conn: Connection, digest: str) -> bool:
    """Whether the blob exists; on PostgreSQL it also stays locked against deletion until commit."""
    query = sa.select(blobs.c.id).where(blobs.c.digest == digest).with_for_update(key_share=True)
    return conn.execute(query).first() is not None


def _write_stream(conn: Connection, chunks: Iterator[bytes | memoryview]) -> str:
    blob_id = conn.execute(
        sa.insert(blobs).values(digest=None, size=0, chunks=0, created_at=utcnow()).returning(blobs.c.id)
    ).scalar_one()
    hasher = hashlib.sha256()
    size = count = 0
    for chunk in chunks:
        hasher.update(chunk)
        size += len(chunk)
        conn.execute(sa.insert(blob_chunks).values(blob_id=blob_id, seq=count, data=bytes(chunk)))
        count += 1
    digest = hasher.hexdigest()
    if not _hold_existing(conn, digest):
        try:
            with conn.begin_nested():
                conn.execute(
                    sa.update(blobs).where(blobs.c.id == blob_id).values(digest=digest, size=size, chunks=count)
                )
            return digest
        except IntegrityError:
            pass  # a concurrent transaction committed the same content first; keep theirs
    conn.execute(sa.delete(blob_chunks).where(blob_chunks.c.blob_id == blob_id))
    conn.execute(sa.delete(blobs).where(blobs.c.id == blob_id))
    return digest


def _rechunk(pieces: Iterable[bytes | bytearray | memoryview], size: int) -> Iterator[bytes | memoryview]:
    """Regroup pieces of any sizes into chunks of exactly ``size`` bytes (the last may be shorter)."""
    pending = bytearray()
    for piece in pieces:
        view = memoryview(piece).cast("B")
        start = 0
        if pending:
            start = min(size - len(pending), len(view))
            pending += view[:start]
            if len(pending) < size:
                continue
            yield bytes(pending)
            pending.clear()
        while len(view) - start >= size:
            yield view[start : start + size]
            start += size
        pending += view[start:]
    if pending:
        yield bytes(pending)


def has_blob(conn: Connection, digest: str) -> bool:
    return conn.execute(sa.select(blobs.c.id).where(blobs.c.digest == digest)).first() is not None


def iter_blob(conn: Connection, digest: str) -> Iterator[bytes]:
    """Yield the blob's chunks in order, one query each, then verify size and sha256.

    The check can only finish after the last chunk, so a caller must consume the whole iterator
    before trusting what it received; :func:`read_blob` does that for you.
    """
    row = conn.execute(sa.select(blobs.c.id, blobs.c.size, blobs.c.chunks).where(blobs.c.digest == digest)).first()
    if row is None:
        raise StoreError(f"blob {digest} is not in the store; it was never written or was garbage-collected")
    hasher = hashlib.sha256()
    size = 0
    for seq in range(row.chunks):
        data = conn.scalar(
            sa.select(blob_chunks.c.data).where(blob_chunks.c.blob_id == row.id, blob_chunks.c.seq == seq)
        )
        if data is None:
            raise StoreError(f"blob {digest} is corrupt: chunk {seq} of {row.chunks} is missing")
        hasher.update(data)
        size += len(data)
        yield data
    if size != row.size or hasher.hexdigest() != digest:
        raise StoreError(f"blob {digest} is corrupt: sha256 mismatch")


def read_blob(conn: Connection, digest: str) -> bytes:
    """The whole blob, verified before it is returned."""
    return b"".join(iter_blob(conn, digest))


def read_blob_view(conn: Connection, digest: str) -> memoryview:
    """The whole blob as a read-only view, verified, filled chunk by chunk into one buffer.

    :func:`read_blob` holds the chunks and their join at once, twice the blob; this holds the blob
    once, and ``core.codec.decode`` makes arrays that are views of it, so resuming a run with a
    model of several gigabytes costs one copy of it.
    """
    size = conn.scalar(sa.select(blobs.c.size).where(blobs.c.digest == digest))
    buffer = np.empty(size or 0, dtype=np.uint8)
    filled = 0
    for chunk in iter_blob(conn, digest):  # raises for an unknown digest, and after the last chunk if corrupt
        if filled + len(chunk) > len(buffer):
            raise StoreError(f"blob {digest} is corrupt: its chunks hold more than its {len(buffer)} bytes")
        buffer[filled : filled + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
        filled += len(chunk)
    buffer.flags.writeable = False
    return buffer.data


def delete_unreferenced_blobs(conn: Connection) -> int:
    """Delete every blob that no row refers to and return how many went.

    References are found from the schema's foreign keys to ``blobs``, so a table added later (the
    model registry) protects its blobs by declaring its foreign key, with no change here.
    """
    references = [
        fk
        for table in metadata.tables.values()
        if table is not blob_chunks
        for fk in table.foreign_keys
        if fk.column.table is blobs
    ]
    unreferenced = sa.select(blobs.c.id).where(
        blobs.c.digest.is_not(None), *(~sa.exists().where(fk.parent == fk.column) for fk in references)
    )
    ids = list(conn.scalars(unreferenced))
    for start in range(0, len(ids), 500):  # keeps each IN list well under any bind-parameter limit
        batch = ids[start : start + 500]
        conn.execute(sa.delete(blob_chunks).where(blob_chunks.c.blob_id.in_(batch)))
        conn.execute(sa.delete(blobs).where(blobs.c.id.in_(batch)))
    return len(ids)
