"""Safetensors blobs sent straight from the arrays, never joined into one copy.

``fedlearn.core.codec.encode`` builds the whole blob as one ``bytes`` and, for a multi-gigabyte
model, holds the GIL for seconds while it copies; a coordinator doing that stalls every session's
heartbeats, and a node doing it looks dead. A :class:`Blob` is instead the codec's parts (the
safetensors header plus the arrays' own buffers, see ``core.codec.encode_parts``): chunks are cut
from them as they are sent, the digest is one ``hashlib`` pass (which releases the GIL), and
memory stays at one copy of the model. The bytes are exactly ``encode``'s, so the receiver
decodes them with ``core.codec.decode`` as usual.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from fedlearn.core.codec import encode_parts
from fedlearn.core.params import ParamSet
from fedlearn.runtime.proto import fleet_pb2 as pb
from fedlearn.runtime.transport.chunks import iter_chunks


@dataclass(frozen=True, slots=True, kw_only=True)
class Blob:
    """A content-addressed safetensors blob as a sequence of buffers; the empty blob has none."""

    parts: tuple[memoryview, ...]
    size: int
    digest: str

    @property
    def ref(self) -> pb.BlobRef:
        return pb.BlobRef(digest=self.digest, size=self.size)

    def chunks(self, chunk_bytes: int) -> Iterator[bytes]:
        return iter_chunks(self.parts, chunk_bytes)


EMPTY_BLOB = Blob(parts=(), size=0, digest="")


def stream_encode(params: ParamSet) -> Blob:
    """The safetensors blob of ``params``, without copying them."""
    if not params:
        return EMPTY_BLOB
    parts = encode_parts(params)
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return Blob(parts=parts, size=sum(p.nbytes for p in parts), digest=digest.hexdigest())
