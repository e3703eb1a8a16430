import hashlib

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError, StoreError
from fedlearn.core.params import ParamSet
from fedlearn.engine.engine import RunState
from fedlearn.runtime.store import open_store
from tests.runtime.store.conftest import SMALL_CHUNK

DATA = bytes(range(256)) * 3 + b"tail"  # 772 bytes: 13 chunks of 64 with a short last one


def test_put_blob_returns_sha256_and_round_trips(store):
    digest = store.put_blob(DATA)

    assert digest == hashlib.sha256(DATA).hexdigest()
    assert store.get_blob(digest) == DATA
    assert store.has_blob(digest)


def test_put_blob_twice_stores_one_copy(store, sql):
    first = store.put_blob(DATA)

    second = store.put_blob(DATA)

    assert first == second
    assert sql("SELECT count(*) AS n FROM blobs")[0].n == 1
    assert sql("SELECT count(*) AS n FROM blob_chunks")[0].n == 13


def test_put_blob_splits_into_chunks_of_chunk_size(store, sql):
    store.put_blob(DATA)

    rows = sql("SELECT seq, data FROM blob_chunks ORDER BY seq")

    assert [row.seq for row in rows] == list(range(13))
    assert {len(row.data) for row in rows[:-1]} == {SMALL_CHUNK}
    assert len(rows[-1].data) == len(DATA) % SMALL_CHUNK
    assert b"".join(row.data for row in rows) == DATA


def test_put_blob_from_pieces_of_any_size_equals_put_blob_of_the_bytes(store, sql):
    pieces = [DATA[:1], DATA[1:100], b"", DATA[100:101], DATA[101:500], memoryview(DATA)[500:]]

    digest = store.put_blob(iter(pieces))

    assert digest == hashlib.sha256(DATA).hexdigest()
    assert store.get_blob(digest) == DATA
    assert [len(row.data) for row in sql("SELECT data FROM blob_chunks ORDER BY seq")][:-1] == [SMALL_CHUNK] * 12


def test_put_blob_from_pieces_of_known_content_leaves_no_orphan_chunks(store, sql):
    store.put_blob(DATA)

    store.put_blob(iter([DATA[:300], DATA[300:]]))

    assert sql("SELECT count(*) AS n FROM blobs")[0].n == 1
    assert sql("SELECT count(*) AS n FROM blob_chunks")[0].n == 13


def test_iter_blob_streams_chunks_in_order(store):
    digest = store.put_blob(DATA)

    chunks = list(store.iter_blob(digest))

    assert len(chunks) == 13
    assert b"".join(chunks) == DATA


def test_empty_blob_round_trips(store):
    digest = store.put_blob(b"")

    assert store.get_blob(digest) == b""


def test_get_blob_detects_a_tampered_chunk(store, sql):
    digest = store.put_blob(DATA)
    sql("UPDATE blob_chunks SET data = :data WHERE seq = 5", data=b"x" * SMALL_CHUNK)

    with pytest.raises(StoreError, match=f"^blob {digest} is corrupt: sha256 mismatch$"):
        store.get_blob(digest)


def test_iter_blob_detects_a_tampered_chunk_after_the_last_one(store, sql):
    digest = store.put_blob(DATA)
    sql("UPDATE blob_chunks SET data = :data WHERE seq = 12", data=b"tampered")

    with pytest.raises(StoreError, match="sha256 mismatch"):
        list(store.iter_blob(digest))


def test_get_blob_detects_a_missing_chunk(store, sql):
    digest = store.put_blob(DATA)
    sql("DELETE FROM blob_chunks WHERE seq = 3")

    with pytest.raises(StoreError, match=f"blob {digest} is corrupt: chunk 3 of 13 is missing"):
        store.get_blob(digest)


def test_get_blob_of_unknown_digest_is_refused(store):
    digest = hashlib.sha256(b"never stored").hexdigest()

    with pytest.raises(StoreError, match=f"blob {digest} is not in the store"):
        store.get_blob(digest)
    assert not store.has_blob(digest)


def test_delete_unreferenced_blobs_keeps_only_checkpoint_blobs(store, sql):
    run_id = store.create_run("r", "", seed=0, rounds=1)
    state = RunState(round=1, params=ParamSet({"w": np.arange(40.0)}), strategy_state=ParamSet())
    store.save_checkpoint(run_id, state)
    loose = store.put_blob(DATA)

    deleted = store.delete_unreferenced_blobs()

    assert deleted == 1
    assert not store.has_blob(loose)
    assert sql("SELECT count(*) AS n FROM blobs")[0].n == 2
    assert store.load_checkpoint(run_id).params.bitwise_equal(state.params)
    assert sql("SELECT count(*) AS n FROM blob_chunks WHERE blob_id NOT IN (SELECT id FROM blobs)")[0].n == 0


def test_delete_unreferenced_blobs_frees_blobs_of_superseded_checkpoints(store):
    run_id = store.create_run("r", "", seed=0, rounds=2)
    for number in (1, 2):
        params = ParamSet({"w": np.full(8, float(number))})
        store.save_checkpoint(run_id, RunState(round=number, params=params, strategy_state=ParamSet()))

    assert store.delete_unreferenced_blobs() == 1
    assert store.delete_unreferenced_blobs() == 0


@pytest.mark.parametrize("chunk_size", [0, -1, 2**30, 1.5])
def test_open_store_refuses_bad_chunk_size(tmp_path, chunk_size):
    with pytest.raises(ConfigError, match="`chunk_size` must be an int in"):
        open_store(tmp_path / "s.db", chunk_size=chunk_size)
