"""Canonical bytes for what secure aggregation signs, authenticates or feeds to a KDF.

Every context string (an HKDF ``info``, AES-GCM associated data, the bytes a node signs) is built
by :func:`canonical`: a versioned domain tag, then each field tagged with its type and prefixed
with its length. The encoding is injective, so two different field lists never give the same
bytes ("ab" + "c" and "a" + "bc" differ), and a tag from one purpose never verifies for another.

Layout of one field: a type byte (``s`` UTF-8 text, ``b`` raw bytes, ``i`` a non-negative integer
as minimal big-endian bytes), a 4-byte big-endian length, then the bytes themselves.
"""

from __future__ import annotations

import struct

PROTOCOL = "fedlearn/secagg/v1"
"""The version every domain tag starts with; a new byte layout gets a new version."""

_LENGTH = struct.Struct(">I")


def canonical(domain: str, *fields: str | bytes | int) -> bytes:
    """``PROTOCOL/domain`` followed by each field, tagged and length-prefixed.

    Integers must be non-negative (run seeds, rounds, indices); bools are refused so that
    ``True`` never silently stands for 1.
    """
    parts = [_field(f"{PROTOCOL}/{domain}")]
    parts.extend(_field(value) for value in fields)
    return b"".join(parts)


def _field(value: str | bytes | int) -> bytes:
    if isinstance(value, str):
        tag, data = b"s", value.encode("utf-8")
    elif isinstance(value, bytes):
        tag, data = b"b", value
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        tag, data = b"i", value.to_bytes((value.bit_length() + 7) // 8, "big")
    else:
        raise TypeError(f"a canonical field must be text, bytes or an integer >= 0; got {value!r}")
    return tag + _LENGTH.pack(len(data)) + data
