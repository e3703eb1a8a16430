"""The wire codec: parameter sets as safetensors bytes, never pickle.

safetensors stores a JSON header and raw little-endian buffers, so decoding executes nothing it
received. This module reads and writes the format itself, because a model of several gigabytes
must not be copied on the way: :func:`encode_parts` describes a blob as its header plus views of
the arrays' own memory (a sender streams or hashes them and no joined copy ever exists), and
:func:`decode` hands back arrays that are views of the buffer it was given, when that buffer is
read-only. The bytes are exactly those ``safetensors.numpy.save`` writes, and no message that
safetensors refuses is accepted here (both are tested against the library itself).

Decoding treats its input as hostile: a size limit is checked before parsing, the header must
describe tensors that tile the data region exactly (no gaps, overlaps or bytes left over), every
failure becomes a :class:`CodecError`, and the arrays handed back are read-only.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping

import numpy as np

from fedlearn.core.errors import CodecError
from fedlearn.core.limits import DEFAULT_MAX_MESSAGE_BYTES
from fedlearn.core.params import ParamSet

METADATA_KEY = "__metadata__"  # the one header entry that is not a tensor
_META_KEY = "fedlearn"  # all metadata as one sorted JSON string: see encode_parts()
_MAX_HEADER_BYTES = 100_000_000  # safetensors' own bound: a header is names and shapes, never data
_ALIGN = 8  # the header is padded with spaces so every buffer starts 8-byte aligned

# numpy dtype (kind + itemsize) -> safetensors name. The order is safetensors' own, from the
# first-written dtype to the last: tensors are laid out by it, then by name.
_DTYPES = {
    "u8": "U64", "i8": "I64", "f8": "F64", "f4": "F32", "u4": "U32", "i4": "I32",
    "f2": "F16", "u2": "U16", "i2": "I16", "i1": "I8", "u1": "U8", "b1": "BOOL",
}  # fmt: skip
_RANK = {key: rank for rank, key in enumerate(_DTYPES)}
_NUMPY = {name: np.dtype("?" if key == "b1" else key).newbyteorder("<") for key, name in _DTYPES.items()}


def encode(params: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialise parameters (and optional string metadata) to safetensors bytes."""
    return b"".join(encode_parts(params, metadata))


def encode_parts(params: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> tuple[memoryview, ...]:
    """The safetensors blob of ``params`` as buffers that concatenate to :func:`encode`'s bytes.

    The first part is the length-prefixed header; each other part is a view of one array's
    memory (copied only when the array is not already contiguous little-endian), so a blob of
    any size costs no more than its header until someone reads the parts.
    """
    if METADATA_KEY in params:
        raise CodecError(f"parameter name {METADATA_KEY!r} is reserved by the safetensors format")
    arrays = {name: _little_endian_contiguous(name, value) for name, value in params.items()}
    order = sorted(arrays, key=lambda name: (_RANK[_dtype_key(arrays[name])], name))
    header: dict[str, object] = {}
    if metadata:
        # One key holding sorted JSON makes equal inputs give equal bytes, which content
        # addressing and reproducible artifacts rely on.
        header[METADATA_KEY] = {_META_KEY: json.dumps(dict(metadata), sort_keys=True)}
    offset = 0
    for name in order:
        array = arrays[name]
        shape, nbytes = list(array.shape), array.nbytes
        header[name] = {"dtype": _DTYPES[_dtype_key(array)], "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    try:
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        raise CodecError(f"cannot encode parameters: a name is not valid Unicode ({exc})") from exc
    text += b" " * (-len(text) % _ALIGN)
    return (memoryview(struct.pack("<Q", len(text)) + text), *(_bytes_view(arrays[name]) for name in order))


def decode(data: bytes | bytearray | memoryview, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> ParamSet:
    """Parse safetensors bytes into a read-only :class:`ParamSet`; see :func:`decode_with_metadata`."""
    return decode_with_metadata(data, max_bytes=max_bytes)[0]


def decode_with_metadata(
    data: bytes | bytearray | memoryview, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> tuple[ParamSet, dict[str, str]]:
    """Parse safetensors bytes, returning the parameters and the header's metadata.

    A read-only buffer (``bytes``, or a read-only ``memoryview`` whose owner has stopped writing
    to it, as the runtime's reassembly does) is not copied: the arrays are views of it and keep
    it alive. A writable buffer is copied once first, so that nobody can change decoded
    parameters behind the model's back.
    """
    if len(data) > max_bytes:
        raise CodecError(f"message is {len(data)} bytes; the limit is {max_bytes} (raise max_message_bytes)")
    view = memoryview(data).cast("B")
    if not view.readonly:
        view = memoryview(bytes(view))
    header, start = _read_header(view)
    metadata = _metadata(header)
    tensors = sorted(
        ((name, _tensor_info(name, info)) for name, info in header.items() if name != METADATA_KEY),
        key=lambda item: item[1][2],
    )
    end = 0
    arrays: dict[str, np.ndarray] = {}
    for name, (dtype, shape, begin, stop) in tensors:
        if begin != end:
            raise CodecError(f"tensor {name!r} starts at data byte {begin} but {end} was expected: corrupt header")
        if start + stop > len(view):
            raise CodecError(f"tensor {name!r} ends at byte {stop} of the data but only {len(view) - start} follow")
        array = np.frombuffer(view, dtype=np.uint8, count=stop - begin, offset=start + begin).view(dtype)
        if not array.flags.aligned:  # a foreign writer that does not pad its header; numpy wants aligned data
            array = array.copy()
        arrays[name] = array.reshape(shape)
        end = stop
    if start + end != len(view):
        raise CodecError(f"the tensors cover {end} bytes but {len(view) - start} follow the header: corrupt message")
    return ParamSet(arrays), metadata


def _read_header(view: memoryview) -> tuple[dict[str, object], int]:
    """The parsed JSON header and the offset at which the data region starts."""
    if len(view) < 8:
        raise CodecError(f"message is {len(view)} bytes; a safetensors message needs at least 8")
    (header_len,) = struct.unpack("<Q", view[:8])
    if header_len > len(view) - 8:
        raise CodecError(f"header claims {header_len} bytes but only {len(view) - 8} follow: truncated or corrupt")
    if header_len > _MAX_HEADER_BYTES:
        raise CodecError(f"header claims {header_len} bytes; the limit is {_MAX_HEADER_BYTES}: corrupt message")
    try:
        header = json.loads(bytes(view[8 : 8 + header_len]))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CodecError(f"message header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise CodecError("message header must be a JSON object")
    return header, 8 + header_len


def _metadata(header: Mapping[str, object]) -> dict[str, str]:
    meta = header.get(METADATA_KEY, {})
    if isinstance(meta, dict) and isinstance(meta.get(_META_KEY), str):
        try:
            meta = json.loads(meta[_META_KEY])
        except (json.JSONDecodeError, RecursionError) as exc:
            raise CodecError(f"message metadata is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise CodecError("message metadata must map strings to strings")
    return dict(meta)


def _tensor_info(name: str, info: object) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """Dtype, shape and data offsets of one header entry, each checked against the others."""
    if not isinstance(info, dict):
        raise CodecError(f"header entry {name!r} must be a JSON object")
    dtype = _NUMPY.get(info.get("dtype"))  # type: ignore[arg-type]
    if dtype is None:
        raise CodecError(f"tensor {name!r} has dtype {info.get('dtype')!r}, which the wire format cannot carry")
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
        raise CodecError(f"tensor {name!r} has shape {shape!r}; expected a list of non-negative integers")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(n) for n in offsets):
        raise CodecError(f"tensor {name!r} has data_offsets {offsets!r}; expected two non-negative integers")
    begin, stop = offsets
    if stop - begin != math.prod(shape) * dtype.itemsize:
        raise CodecError(
            f"tensor {name!r} is {dtype.name}{shape}, {math.prod(shape) * dtype.itemsize} bytes, "
            f"but its data_offsets span {stop - begin}: corrupt header"
        )
    return dtype, tuple(shape), begin, stop


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _dtype_key(array: np.ndarray) -> str:
    return f"{array.dtype.kind}{array.dtype.itemsize}"


def _little_endian_contiguous(name: str, value: np.ndarray) -> np.ndarray:
    array = np.asarray(value)
    if _dtype_key(array) not in _DTYPES:
        raise CodecError(f"parameter {name!r} has dtype {array.dtype}, which the wire format cannot carry")
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.asarray(array, order="C")  # a view when already contiguous; keeps 0-d shapes


def _bytes_view(array: np.ndarray) -> memoryview:
    return array.reshape(-1).view(np.uint8).data
