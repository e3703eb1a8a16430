"""Safetensors blobs written straight from the arrays, never joined into one copy.

``fedlearn.core.codec.encode`` builds the whole blob as one ``bytes`` and, for a multi-gigabyte
model, holds the GIL for seconds while it copies; a coordinator doing that stalls every session's
heartbeats, and a node doing it looks dead. A :class:`Blob` is instead the safetensors header
plus the arrays' own buffers: chunks are cut from them as they are sent, the digest is one
``hashlib`` pass (which releases the GIL), and memory stays at one copy of the model. The bytes
are ordinary safetensors, so the receiver decodes them with ``core.codec.decode`` as usual.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from fedlearn.core.errors import CodecError
from fedlearn.core.params import ParamSet
from fedlearn.runtime.proto import fleet_pb2 as pb
from fedlearn.runtime.transport.chunks import iter_chunks

_DTYPES = {
    "f8": "F64", "f4": "F32", "f2": "F16",
    "i8": "I64", "i4": "I32", "i2": "I16", "i1": "I8",
    "u8": "U64", "u4": "U32", "u2": "U16", "u1": "U8",
    "b1": "BOOL",
}  # fmt: skip
_METADATA = "__metadata__"
_ALIGN = 8  # the header is padded so every buffer starts aligned, as safetensors itself does


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
    """The safetensors blob of ``params`` (names sorted, widest dtypes first), without copying them."""
    if not params:
        return EMPTY_BLOB
    if _METADATA in params:
        raise CodecError(f"parameter name {_METADATA!r} is reserved by the safetensors format")
    arrays = {name: _little_endian_contiguous(name, params[name]) for name in params}
    order = sorted(arrays, key=lambda name: (-arrays[name].dtype.itemsize, name))
    header: dict[str, object] = {}
    offset = 0
    for name in order:
        array = arrays[name]
        dtype = _DTYPES[f"{array.dtype.kind}{array.dtype.itemsize}"]
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % _ALIGN)
    parts = (memoryview(struct.pack("<Q", len(text)) + text), *(_bytes_view(arrays[name]) for name in order))
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return Blob(parts=parts, size=sum(p.nbytes for p in parts), digest=digest.hexdigest())


def _little_endian_contiguous(name: str, array: np.ndarray) -> np.ndarray:
    if f"{array.dtype.kind}{array.dtype.itemsize}" not in _DTYPES:
        raise CodecError(f"parameter {name!r} has dtype {array.dtype}, which the wire format cannot carry")
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.asarray(array, order="C")  # a view when already contiguous; keeps 0-d shapes


def _bytes_view(array: np.ndarray) -> memoryview:
    return array.reshape(-1).view(np.uint8).data
