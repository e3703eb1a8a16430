from __future__ import annotations

import json
import re
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from fedlearn.core.codec import decode, decode_with_metadata, encode, encode_parts
from fedlearn.core.errors import CodecError, ValidationError
from fedlearn.core.params import ParamSet

dtypes = st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_])
names = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20).filter(
    lambda s: s != "__metadata__"
)
arrays = dtypes.flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)))


@given(st.dictionaries(names, arrays, max_size=6))
@settings(max_examples=150, deadline=None)
def test_codec_round_trips_any_paramset_bit_for_bit(items: dict[str, np.ndarray]) -> None:
    params = ParamSet(items)

    restored = decode(encode(params))

    assert restored.bitwise_equal(params)


def test_decoded_arrays_are_read_only() -> None:
    restored = decode(encode(ParamSet({"w": np.ones(3, np.float32)})))

    with pytest.raises(ValueError, match="read-only"):
        restored["w"][0] = 0


def test_metadata_round_trips() -> None:
    blob = encode(ParamSet({"w": np.ones(1)}), metadata={"run": "a", "round": "3"})

    _, metadata = decode_with_metadata(blob)

    assert metadata == {"run": "a", "round": "3"}


@given(st.binary(max_size=512))
@settings(max_examples=400, deadline=None)
def test_decoder_turns_random_bytes_into_codec_error_or_valid_params(data: bytes) -> None:
    try:
        result = decode(data)
    except CodecError:
        return
    assert isinstance(result, ParamSet)


@given(st.integers(min_value=0, max_value=2**64 - 1), st.binary(max_size=64))
@settings(max_examples=200, deadline=None)
def test_decoder_survives_hostile_header_lengths(length: int, rest: bytes) -> None:
    with pytest.raises(CodecError):
        decode(struct.pack("<Q", length) + b"{" + rest)


def test_truncated_message_is_a_codec_error_naming_truncation() -> None:
    blob = encode(ParamSet({"w": np.ones(100, np.float32)}))

    with pytest.raises(CodecError):
        decode(blob[: len(blob) // 2])


def test_oversized_message_is_refused_before_parsing() -> None:
    blob = encode(ParamSet({"w": np.ones(100, np.float32)}))

    with pytest.raises(CodecError, match="the limit is 64"):
        decode(blob, max_bytes=64)


def test_object_arrays_cannot_be_encoded() -> None:
    with pytest.raises(CodecError, match="dtype object"):
        encode({"w": np.array([object()])})


def test_encoding_is_byte_identical_across_processes() -> None:
    import subprocess
    import sys

    script = (
        "import numpy as np, sys; from fedlearn.core.codec import encode; "
        "sys.stdout.buffer.write(encode({'b': np.arange(3.0), 'a': np.ones(2, np.float32)}, "
        "metadata={'z': '1', 'a': '2', 'm': '3', 'q': '4'}))"
    )
    outputs = {subprocess.run([sys.executable, "-c", script], capture_output=True, check=True).stdout for _ in range(4)}

    assert len(outputs) == 1


# -- the format is safetensors' own, read and written without copying the arrays ---------------

metadata_maps = st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)


@given(st.dictionaries(names, arrays, max_size=6), metadata_maps)
@settings(max_examples=150, deadline=None)
def test_encode_is_byte_identical_to_safetensors_save(items: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    packed = {"fedlearn": json.dumps(metadata, sort_keys=True)} if metadata else None

    assert encode(items, metadata) == st_save({k: np.asarray(v, order="C") for k, v in items.items()}, metadata=packed)


@given(st.dictionaries(names, arrays, max_size=6))
@settings(max_examples=150, deadline=None)
def test_decode_reads_what_safetensors_writes_as_safetensors_does(items: dict[str, np.ndarray]) -> None:
    blob = st_save({k: np.asarray(v, order="C") for k, v in items.items()})

    assert decode(blob).bitwise_equal(ParamSet(st_load(blob)))


def test_encode_parts_join_to_encode_and_view_the_arrays_memory() -> None:
    weight = np.arange(1000, dtype=np.float32)
    params = {"weight": weight, "step": np.array(7, np.int64)}

    parts = encode_parts(params)

    assert b"".join(parts) == encode(params)
    assert any(np.shares_memory(np.frombuffer(part, np.uint8), weight) for part in parts[1:])


def test_decode_of_a_read_only_buffer_makes_views_that_cannot_be_made_writable() -> None:
    buffer = np.frombuffer(encode({"w": np.arange(10, dtype=np.float64)}), np.uint8).copy()
    buffer.flags.writeable = False

    w = decode(memoryview(buffer))["w"]

    assert np.shares_memory(w, buffer)
    with pytest.raises(ValueError, match="WRITEABLE"):
        w.flags.writeable = True


def test_decode_of_a_writable_buffer_copies_it_so_later_writes_do_not_reach_the_params() -> None:
    data = bytearray(encode({"w": np.zeros(4, np.float32)}))

    params = decode(data)
    data[-4:] = b"\xff" * 4

    assert params["w"].tolist() == [0, 0, 0, 0]


def test_decode_of_an_unpadded_foreign_header_gives_aligned_arrays() -> None:
    header = b'{"w":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}'  # 55 bytes: the data starts unaligned
    data = struct.pack("<Q", len(header)) + header + np.array([1.5, -2.0]).tobytes()

    w = decode(data)["w"]

    assert w.flags.aligned and w.tolist() == [1.5, -2.0]


def _header_blob(entries: dict[str, object], data: bytes) -> bytes:
    header = json.dumps(entries).encode()
    return struct.pack("<Q", len(header)) + header + data


@pytest.mark.parametrize(
    ("entries", "data", "message"),
    [
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "starts at data byte 4 but 0"),
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
            },
            b"\0" * 8,
            "starts at data byte 4 but 8",
        ),
        ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8, "ends at byte 16 of the data"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 8, "cover 4 bytes but 8 follow"),
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "data_offsets span 8"),
        ({"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, b"\0" * 4, "non-negative integers"),
        ({"a": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}}, b"\0" * 4, "non-negative integers"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, b"\0" * 4, "two non-negative integers"),
        ({"a": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}}, b"\0" * 2, "dtype 'BF16'"),
        ({"a": [1, 2]}, b"", "must be a JSON object"),
    ],
)
def test_decoder_refuses_headers_whose_tensors_do_not_tile_the_data(
    entries: dict[str, object], data: bytes, message: str
) -> None:
    with pytest.raises(CodecError, match=re.escape(message)):
        decode(_header_blob(entries, data))


@given(
    st.dictionaries(names, arrays, min_size=1, max_size=4),
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=255),
    st.integers(min_value=0),
)
@settings(max_examples=400, deadline=None)
def test_decoder_accepts_no_corruption_that_safetensors_refuses(
    items: dict[str, np.ndarray], position: int, value: int, cut: int
) -> None:
    blob = bytearray(encode(items))
    (header_len,) = struct.unpack("<Q", blob[:8])
    blob[position % (8 + header_len)] = value  # corrupt the length or the header, never only the data
    blob = bytes(blob[: len(blob) - cut % 3])

    try:
        ours = decode(blob)
    except (CodecError, ValidationError):
        return
    assert ours.bitwise_equal(ParamSet(st_load(blob)))
