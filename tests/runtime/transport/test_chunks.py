"""Cutting blobs into chunks and putting them back, including from hostile input."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlearn.core.codec import decode, encode
from fedlearn.core.errors import CodecError
from fedlearn.runtime.transport.chunks import Assembler, iter_chunks

FUZZ = settings(max_examples=300, deadline=None)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _assemble(chunks: list[bytes], *, size: int, digest: str, max_bytes: int = 10**6) -> bytes:
    assembler = Assembler(size=size, digest=digest, max_bytes=max_bytes, what="blob")
    for chunk in chunks:
        assembler.add(chunk)
    return bytes(assembler.finish())


@FUZZ
@given(parts=st.lists(st.binary(max_size=900), max_size=8), chunk_bytes=st.integers(1, 700))
def test_chunks_are_full_sized_and_reassemble_to_the_original(parts: list[bytes], chunk_bytes: int) -> None:
    data = b"".join(parts)

    chunks = list(iter_chunks(parts, chunk_bytes))

    assert all(len(c) == chunk_bytes for c in chunks[:-1]) and all(0 < len(c) <= chunk_bytes for c in chunks)
    assert _assemble(chunks, size=len(data), digest=_sha256(data)) == data


@FUZZ
@given(chunks=st.lists(st.binary(max_size=300), max_size=20), size=st.integers(0, 3000), digest=st.text(max_size=70))
def test_assembler_fed_arbitrary_chunks_returns_them_or_raises_codec_error(
    chunks: list[bytes], size: int, digest: str
) -> None:
    try:
        result = _assemble(chunks, size=size, digest=digest)
    except CodecError:
        return
    assert result == b"".join(chunks)
    assert len(result) == size


def test_oversized_blob_is_refused_before_any_byte_arrives() -> None:
    with pytest.raises(CodecError, match=r"blob is 2000 bytes; the limit is 1000 \(raise max_message_bytes\)"):
        Assembler(size=2000, digest="0" * 64, max_bytes=1000, what="blob")


def test_more_bytes_than_announced_are_refused() -> None:
    with pytest.raises(CodecError, match="more than the 3 bytes it announced"):
        _assemble([b"ab", b"cd"], size=3, digest=_sha256(b"abc"))


def test_truncated_blob_is_refused() -> None:
    with pytest.raises(CodecError, match="broke off after 2 of 3 bytes"):
        _assemble([b"ab"], size=3, digest=_sha256(b"abc"))


def test_corrupted_blob_is_refused() -> None:
    with pytest.raises(CodecError, match="does not match its sha256 digest"):
        _assemble([b"abd"], size=3, digest=_sha256(b"abc"))


def test_empty_blob_goes_by_the_empty_digest() -> None:
    assert _assemble([], size=0, digest="") == b""


def test_assembled_blob_is_read_only_and_decodes_into_views_of_it() -> None:
    data = encode({"w": np.arange(1000, dtype=np.float32)})
    assembler = Assembler(size=len(data), digest=_sha256(data), max_bytes=len(data), what="blob")
    for chunk in iter_chunks([data], 256):
        assembler.add(chunk)

    blob = assembler.finish()
    w = decode(blob)["w"]

    assert blob.readonly
    assert np.shares_memory(w, np.frombuffer(blob, np.uint8))
    assert w.tolist() == list(range(1000))


_RECEIVE_ONE_MODEL = """
import hashlib, sys
from pathlib import Path
import numpy as np
from fedlearn.core.codec import decode, encode_parts
from fedlearn.runtime.transport.chunks import Assembler, iter_chunks

def rss(field):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))
    return int(line.split()[1]) * 1024

model = np.random.default_rng(0).standard_normal(50_000_000, dtype=np.float32)  # 200 MB
parts = encode_parts({"w": model})
digest = hashlib.sha256(b"".join(bytes(p) for p in parts)).hexdigest()
size = sum(p.nbytes for p in parts)
Path("/proc/self/clear_refs").write_text("5")  # the peak restarts from here
before = rss("VmRSS")
assembler = Assembler(size=size, digest=digest, max_bytes=size, what="blob")
for chunk in iter_chunks(parts, 1 << 20):
    assembler.add(chunk)
params = decode(assembler.finish(), max_bytes=size)
assert params["w"][-1] == model[-1]
print((rss("VmHWM") - before) / model.nbytes)
"""


def test_receiving_and_decoding_a_model_costs_one_copy_of_it() -> None:
    run = subprocess.run([sys.executable, "-c", _RECEIVE_ONE_MODEL], capture_output=True, text=True, check=True)

    assert float(run.stdout) < 1.2
