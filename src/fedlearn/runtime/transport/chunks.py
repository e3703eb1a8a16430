"""Blobs cut into chunks and put back together, treating every chunk as hostile.

A blob is named by the sha256 hex digest of its bytes. The receiver knows the announced size and
digest before the first chunk, so it refuses an oversized blob up front, stops as soon as more
bytes arrive than were announced, and checks the digest at the end: a truncated, padded or
corrupted transfer always ends in :class:`CodecError`, never in a half-filled model.

Chunks are copied into one buffer of the announced size as they arrive, and that buffer is what
the codec decodes, without another copy: a model costs its own size to receive, not two or three
times it. The buffer is reserved, not filled: the kernel commits its pages only as bytes are
written, so an announced size is only a claim on address space, never on memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np

from fedlearn.core.errors import CodecError


def iter_chunks(parts: Sequence[bytes | memoryview], chunk_bytes: int) -> Iterator[bytes]:
    """The concatenation of ``parts`` cut into chunks of exactly ``chunk_bytes`` (the last may be short).

    Small parts are packed together, so a model with hundreds of small tensors still travels in
    full-sized chunks; only one chunk is ever copied at a time.
    """
    pending = bytearray()
    for part in parts:
        view = memoryview(part).cast("B")
        start = 0
        while start < len(view):
            take = min(chunk_bytes - len(pending), len(view) - start)
            pending += view[start : start + take]
            start += take
            if len(pending) == chunk_bytes:
                yield bytes(pending)
                pending.clear()
    if pending:
        yield bytes(pending)


class Assembler:
    """Rebuilds one blob of a known size and digest from chunks; see the module docstring."""

    __slots__ = ("_buffer", "_digest", "_hash", "_received", "_size", "_what")

    def __init__(self, *, size: int, digest: str, max_bytes: int, what: str) -> None:
        if size > max_bytes:
            raise CodecError(f"{what} is {size} bytes; the limit is {max_bytes} (raise max_message_bytes)")
        self._size = size
        self._digest = digest
        self._what = what
        self._hash = hashlib.sha256()
        try:
            self._buffer = np.empty(size, dtype=np.uint8)  # pages are committed only when written
        except MemoryError as exc:
            raise CodecError(f"{what} is {size} bytes, more than this process can reserve") from exc
        self._received = 0

    def add(self, data: bytes) -> None:
        end = self._received + len(data)
        if end > self._size:
            raise CodecError(f"{self._what} sent more than the {self._size} bytes it announced")
        self._buffer[self._received : end] = np.frombuffer(data, dtype=np.uint8)
        self._received = end
        self._hash.update(data)

    def finish(self) -> memoryview:
        """The complete blob, read-only, once its size and digest check out.

        The assembler lets go of the buffer, so whoever decodes the view owns the only reference
        and nothing can write to it any more: decoded arrays may be views of it.
        """
        if self._received != self._size:
            raise CodecError(f"{self._what} broke off after {self._received} of {self._size} bytes")
        empty = self._size == 0 and not self._digest  # the empty blob goes by the empty digest
        if not empty and self._hash.hexdigest() != self._digest:
            raise CodecError(f"{self._what} does not match its sha256 digest: corrupted in transit")
        buffer, self._buffer = self._buffer, np.empty(0, dtype=np.uint8)
        buffer.flags.writeable = False
        return buffer.data
