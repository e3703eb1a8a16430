"""The wire codec: parameter sets as safetensors bytes, never pickle.

safetensors stores a JSON header and raw little-endian buffers, so decoding executes nothing it
received and costs one copy. Metadata (string to string) rides in the same header. Decoding
treats its input as hostile: a size limit is checked before parsing, every failure becomes a
:class:`CodecError`, and the arrays handed back are read-only.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping

import numpy as np
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

from fedlearn.core.errors import CodecError
from fedlearn.core.params import ParamSet

DEFAULT_MAX_BYTES = 2**31  # 2 GiB; the runtime chunks larger models, see runtime/
_META_KEY = "fedlearn"  # all metadata as one sorted JSON string: see encode()


def encode(params: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialise parameters (and optional string metadata) to safetensors bytes."""
    arrays = {k: np.asarray(v, order="C") for k, v in params.items()}  # keeps 0-d shapes
    for name, array in arrays.items():
        if array.dtype.kind not in "biuf":
            raise CodecError(f"parameter {name!r} has dtype {array.dtype}, which the wire format cannot carry")
    # safetensors writes its metadata map in hash order, so two keys can come out in either
    # order. One key holding sorted JSON makes equal inputs give equal bytes, which content
    # addressing and reproducible artifacts rely on.
    packed = {_META_KEY: json.dumps(dict(metadata), sort_keys=True)} if metadata else None
    try:
        return _st_save(arrays, metadata=packed)
    except Exception as exc:  # safetensors raises its own untyped errors
        raise CodecError(f"cannot encode parameters: {exc}") from exc


def decode(data: bytes | bytearray | memoryview, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ParamSet:
    """Parse safetensors bytes into a read-only :class:`ParamSet`."""
    return decode_with_metadata(data, max_bytes=max_bytes)[0]


def decode_with_metadata(
    data: bytes | bytearray | memoryview, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[ParamSet, dict[str, str]]:
    """Parse safetensors bytes, returning the parameters and the header's metadata."""
    if len(data) > max_bytes:
        raise CodecError(f"message is {len(data)} bytes; the limit is {max_bytes} (raise max_message_bytes)")
    raw = bytes(data)
    metadata = read_metadata(raw)
    try:
        arrays = _st_load(raw)
    except Exception as exc:
        raise CodecError(f"cannot decode parameters: {exc}") from exc
    return ParamSet(arrays), metadata


def read_metadata(data: bytes) -> dict[str, str]:
    """Read only the header's ``__metadata__`` without touching the tensor buffers."""
    if len(data) < 8:
        raise CodecError(f"message is {len(data)} bytes; a safetensors message needs at least 8")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8:
        raise CodecError(f"header claims {header_len} bytes but only {len(data) - 8} follow: truncated or corrupt")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CodecError(f"message header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise CodecError("message header must be a JSON object")
    meta = header.get("__metadata__", {})
    if _META_KEY in meta and isinstance(meta, dict) and isinstance(meta[_META_KEY], str):
        try:
            meta = json.loads(meta[_META_KEY])
        except json.JSONDecodeError as exc:
            raise CodecError(f"message metadata is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise CodecError("message metadata must map strings to strings")
    return dict(meta)
