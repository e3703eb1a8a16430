from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedlearn.core.codec import decode, decode_with_metadata, encode
from fedlearn.core.errors import CodecError
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
