"""Tasks and replies to and from the wire, the blob store and cache, backoff and the public API."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import random
import weakref

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedlearn.core.codec import decode, encode
from fedlearn.core.errors import CodecError, ConfigError
from fedlearn.core.messages import Reply, Task
from fedlearn.core.params import ParamSet
from fedlearn.runtime import transport
from fedlearn.runtime.proto import fleet_pb2 as pb
from fedlearn.runtime.transport.backoff import Backoff
from fedlearn.runtime.transport.blobs import BlobStore, ParamCache
from fedlearn.runtime.transport.envelope import (
    check_ref,
    decode_payload,
    decode_reply,
    encode_reply,
    parse,
    task_from_header,
    task_header,
)
from fedlearn.runtime.transport.stream import Blob, stream_encode

PARAMS = ParamSet({"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array(3, np.int64)})
FUZZ = settings(max_examples=300, deadline=None)


def _version(i: int) -> ParamSet:
    return PARAMS.map(lambda a: a + i)


def _decode(header: pb.ReplyHeader, payload: bytes | Blob) -> Reply:
    data = b"".join(payload.chunks(100)) if isinstance(payload, Blob) else payload
    return decode_reply(header, data, node_id="a", kind="fit", round=2, max_bytes=10**6)


def test_task_survives_its_header_with_config_and_both_blobs() -> None:
    extras = ParamSet({"c": np.ones(2)})
    task = Task(kind="fit", round=4, run_id="run-1", params=PARAMS, extras=extras, config={"lr": 0.1, "x": "y"})

    header = pb.TaskHeader.FromString(
        task_header("t1", task, params=stream_encode(PARAMS), extras=stream_encode(extras)).SerializeToString()
    )
    again = task_from_header(header, params=PARAMS, extras=extras)

    assert again == task
    assert header.params == stream_encode(PARAMS).ref


_DTYPES = st.sampled_from(["<f8", "<f4", "<f2", "<i8", "<i4", "<i2", "i1", "<u8", "<u4", "<u2", "u1", "?"])


@FUZZ
@given(
    arrays=st.dictionaries(
        st.text(min_size=1, max_size=12).filter(lambda name: name != "__metadata__"),
        _DTYPES.flatmap(lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0))),
        min_size=1,
        max_size=6,
    ),
    chunk_bytes=st.integers(1, 300),
)
def test_streamed_blob_is_safetensors_that_the_codec_decodes_bit_for_bit(
    arrays: dict[str, np.ndarray], chunk_bytes: int
) -> None:
    params = ParamSet(arrays)

    blob = stream_encode(params)
    data = b"".join(blob.chunks(chunk_bytes))

    assert (len(data), hashlib.sha256(data).hexdigest()) == (blob.size, blob.digest)
    assert decode(data).bitwise_equal(params)


def test_the_safetensors_metadata_name_cannot_be_a_parameter() -> None:
    with pytest.raises(CodecError, match="reserved"):
        stream_encode(ParamSet({"__metadata__": np.ones(1)}))


def test_reply_survives_the_wire_bit_for_bit() -> None:
    extras = ParamSet({"delta": np.full(3, np.nan, np.float32)})
    reply = Reply(node_id="a", kind="fit", round=2, params=PARAMS, extras=extras, num_examples=9, metrics={"l": 0.5})

    header, payload = encode_reply("t1", reply)
    again = _decode(pb.ReplyHeader.FromString(header.SerializeToString()), payload)

    assert again.params.bitwise_equal(PARAMS) and again.extras.bitwise_equal(extras)
    assert (again.num_examples, dict(again.metrics), again.error) == (9, {"l": 0.5}, None)


def test_failed_reply_carries_its_reason_and_no_payload() -> None:
    header, payload = encode_reply("t1", Reply(node_id="a", kind="fit", round=2, params=PARAMS, error="boom"))

    assert payload.size == 0
    assert _decode(header, payload).error == "boom"


def test_reply_node_kind_and_round_come_from_the_coordinator_not_the_node() -> None:
    header, payload = encode_reply("t1", Reply(node_id="mallory", kind="evaluate", round=99))

    again = _decode(header, payload)

    assert (again.node_id, again.kind, again.round) == ("a", "fit", 2)


def test_payload_names_outside_the_prefixes_are_refused() -> None:
    with pytest.raises(CodecError, match="names outside"):
        decode_payload(encode({"p/w": np.ones(1), "sneaky": np.ones(1)}), max_bytes=10**6)


def test_bad_digest_reference_is_refused() -> None:
    with pytest.raises(CodecError, match="not a sha256 hex digest"):
        check_ref(pb.BlobRef(digest="../../etc/passwd", size=3), what="blob")


@FUZZ
@given(data=st.binary(max_size=2000))
def test_payload_decoder_fed_random_bytes_only_raises_codec_error(data: bytes) -> None:
    try:
        params, extras = decode_payload(data, max_bytes=1000)
    except CodecError:
        return
    assert isinstance(params, ParamSet) and isinstance(extras, ParamSet)


@FUZZ
@given(
    metrics=st.text(max_size=200) | st.just('{"loss": NaN, "x": [1]}'),
    error=st.none() | st.text(max_size=2000),
    num_examples=st.integers(-(2**63), 2**63 - 1),
    payload=st.binary(max_size=500) | st.just(encode({"p/w": np.ones(2), "x/": np.ones(1)})),
)
def test_reply_decoder_fed_arbitrary_headers_only_raises_codec_error(
    metrics: str, error: str | None, num_examples: int, payload: bytes
) -> None:
    header = pb.ReplyHeader(task_id="t", num_examples=num_examples, metrics_json=metrics)
    if error is not None:
        header.error = error
    try:
        reply = _decode(header, payload)
    except CodecError:
        return
    assert len(reply.error or "") <= 1000


@FUZZ
@given(raw=st.binary(max_size=400))
def test_header_parsing_fed_random_bytes_only_raises_codec_error(raw: bytes) -> None:
    try:
        header = parse(pb.TaskHeader, raw)
        check_ref(header.params, what="params")
        task_from_header(header, params=ParamSet(), extras=ParamSet())
    except CodecError:
        return


@FUZZ
@given(raw=st.binary(max_size=400))
def test_request_parsing_fed_random_bytes_only_raises_codec_error(raw: bytes) -> None:
    for message_type in (pb.NodeMessage, pb.BlobRequest, pb.UploadMessage):
        with contextlib.suppress(CodecError):
            parse(message_type, raw)


def test_blob_store_encodes_a_version_once_and_keeps_the_latest_after_its_tasks_end() -> None:
    store = BlobStore()
    versions = [_version(i) for i in range(3)]

    first = store.acquire(versions[0])
    assert store.acquire(versions[0]) is first
    store.release(first.digest)
    store.release(first.digest)
    kept_while_recent = store.get(first.digest) is first
    for version in versions[1:]:
        store.release(store.acquire(version).digest)

    assert store.encoded == 3
    assert kept_while_recent
    assert store.get(first.digest) is None
    assert len(store) == 1


def test_blob_store_lets_go_of_an_unused_version_when_a_new_one_arrives() -> None:
    weight = np.ones(1000, np.float32)
    old = ParamSet({"w": weight})
    alive = weakref.ref(weight)
    del weight
    store = BlobStore()
    store.release(store.acquire(old).digest)
    del old

    store.acquire(_version(1))
    gc.collect()

    assert alive() is None


def test_blob_store_reuses_the_evaluated_version_when_the_next_round_trains_from_it() -> None:
    store = BlobStore()
    store.release(store.acquire(_version(0)).digest)  # round 1 fit
    evaluated = _version(1)
    store.release(store.acquire(evaluated).digest)  # round 1 evaluate

    store.acquire(evaluated)  # round 2 fit

    assert store.encoded == 2


def test_blob_store_keeps_a_blob_while_a_task_uses_it() -> None:
    store = BlobStore()
    held = store.acquire(PARAMS)
    for i in range(1, 4):
        store.release(store.acquire(_version(i)).digest)

    assert store.get(held.digest) is held


def test_empty_params_make_no_blob() -> None:
    assert BlobStore().acquire(ParamSet()).ref == pb.BlobRef()


def test_param_cache_keeps_the_two_most_recently_used() -> None:
    cache = ParamCache()
    for key in "abc":
        cache.put(key, PARAMS)
        cache.get("a")

    assert [k for k in "abc" if cache.get(k) is not None] == ["a", "c"]


def test_param_cache_makes_room_for_a_download_that_would_pass_its_budget() -> None:
    cache = ParamCache(budget_bytes=3 * PARAMS.nbytes)
    cache.put("a", PARAMS)
    cache.put("b", PARAMS)

    cache.make_room(PARAMS.nbytes)
    kept_when_it_fits = [k for k in "ab" if cache.get(k) is not None]
    cache.make_room(2 * PARAMS.nbytes)

    assert kept_when_it_fits == ["a", "b"]
    assert [k for k in "ab" if cache.get(k) is not None] == ["b"]


def test_backoff_grows_is_capped_and_jittered() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0)
    rng = random.Random(0)

    delays = [backoff.delay(attempt, rng) for attempt in range(10)]

    assert 0.5 <= delays[0] <= 1.0 and 4.0 <= delays[9] <= 8.0
    assert backoff.delay(10**6, rng) <= 8.0
    assert len(set(delays)) == len(delays)


def test_backoff_refuses_impossible_settings() -> None:
    with pytest.raises(ConfigError, match="initial <= maximum"):
        Backoff(initial=5, maximum=1)


def test_transport_public_api_is_pinned() -> None:
    assert transport.__all__ == [
        "DEFAULT_CHUNK_BYTES",
        "DEFAULT_MAX_MESSAGE_BYTES",
        "MAX_CHUNK_BYTES",
        "Assembler",
        "Backoff",
        "Blob",
        "iter_chunks",
        "stream_encode",
    ]
