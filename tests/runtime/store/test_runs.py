import math
import subprocess
import sys

import numpy as np
import pytest

from fedlearn.core.codec import encode
from fedlearn.core.errors import ConfigError, NotFoundError, StoreError
from fedlearn.core.params import ParamSet
from fedlearn.engine.engine import RunState
from fedlearn.engine.history import RoundRecord
from fedlearn.runtime.store import open_store
from tests.runtime.store.conftest import SMALL_CHUNK

CONFIG = '[run]\nname = "demo"\nrounds = 3\n'


def _record(number: int) -> RoundRecord:
    return RoundRecord(
        round=number,
        sampled=4,
        replies=3,
        num_examples=300 + number,
        duration_s=0.1 * number + 1e-9,
        bytes_sent=1000 * number,
        bytes_received=900 * number,
        fit_metrics={"loss": 1 / (number + 2)},
        federated_metrics={"accuracy": 0.5 + number / 100},
        central_metrics={"auc": math.pi / number},
        failures={"node-3": "deadline passed"},
    )


def _state(number: int) -> RunState:
    rng = np.random.default_rng(number)
    params = ParamSet(
        {
            "dense.weight": rng.standard_normal((7, 5)).astype(np.float32),
            "dense.bias": rng.standard_normal(5),
            "steps": np.array(number, dtype=np.int64),
            "special": np.array([np.nan, -0.0, np.inf], dtype=np.float64),
        }
    )
    strategy_state = ParamSet({"adam.m.dense.weight": rng.standard_normal((7, 5)), "adam.t": np.array(number)})
    return RunState(
        round=number,
        params=params,
        strategy_state=strategy_state,
        history=tuple(_record(n) for n in range(1, number + 1)),
    )


def test_create_run_starts_pending_with_its_config(store):
    run_id = store.create_run("demo", CONFIG, seed=42, rounds=3)

    run = store.get_run(run_id)

    assert len(run_id) == 32
    assert (run.id, run.name, run.status, run.message) == (run_id, "demo", "pending", "")
    assert (run.seed, run.rounds_total, run.rounds_done, run.stop_requested) == (42, 3, 0, False)
    assert run.config_toml == CONFIG
    assert run.created_at == run.updated_at
    assert run.created_at.tzinfo is not None


@pytest.mark.parametrize(
    ("name", "seed", "rounds", "message"),
    [
        ("", 0, 1, "run name must be 1-200 characters"),
        ("r", 0, -1, "`rounds` must be an int >= 0; got -1"),
        ("r", 2**64, 1, "`seed` must be an int that fits in 64 signed bits"),
    ],
)
def test_create_run_refuses_bad_arguments(store, name, seed, rounds, message):
    with pytest.raises(ConfigError, match=message):
        store.create_run(name, CONFIG, seed=seed, rounds=rounds)


def test_get_run_of_unknown_id_is_refused(store):
    with pytest.raises(NotFoundError, match="no run with id 'nope'"):
        store.get_run("nope")


def test_set_run_status_records_status_and_message(store):
    run_id = store.create_run("demo", CONFIG, seed=1, rounds=3)

    store.set_run_status(run_id, "failed", "needed 3 nodes but only 1 were available")

    run = store.get_run(run_id)
    assert (run.status, run.message) == ("failed", "needed 3 nodes but only 1 were available")
    assert run.updated_at >= run.created_at


def test_set_run_status_failed_records_the_error_that_failed_the_run(store):
    run_id = store.create_run("demo", CONFIG, seed=1, rounds=3)
    assert store.get_run(run_id).error is None

    store.set_run_status(run_id, "failed", "needed 3 nodes but only 1 were available", error="QuorumError")

    assert store.get_run(run_id).error == "QuorumError"


def test_set_run_status_refuses_an_error_for_a_run_that_did_not_fail(store):
    run_id = store.create_run("demo", CONFIG, seed=1, rounds=3)

    with pytest.raises(ConfigError, match="`error` names what failed a run, so it needs status 'failed'; got status"):
        store.set_run_status(run_id, "completed", error="QuorumError")


def test_set_run_status_refuses_an_error_name_longer_than_its_column(store):
    run_id = store.create_run("demo", CONFIG, seed=1, rounds=3)

    with pytest.raises(ConfigError, match="`error` must be a class name of 1-64 characters"):
        store.set_run_status(run_id, "failed", error="E" * 65)


def test_set_run_status_refuses_unknown_status(store):
    run_id = store.create_run("demo", CONFIG, seed=1, rounds=3)

    with pytest.raises(ConfigError, match="run status must be one of pending, running, completed, failed, stopped"):
        store.set_run_status(run_id, "paused")


def test_set_run_status_of_unknown_run_is_refused(store):
    with pytest.raises(NotFoundError, match="no run with id"):
        store.set_run_status("nope", "running")


def test_request_stop_is_seen_by_stop_requested(store):
    run_id = store.create_run("demo", CONFIG, seed=1, rounds=3)
    assert not store.stop_requested(run_id)

    store.request_stop(run_id)

    assert store.stop_requested(run_id)


def test_runs_to_resume_lists_only_running_runs(store):
    ids = {status: store.create_run(status, CONFIG, seed=1, rounds=3) for status in ("running", "completed", "x")}
    store.set_run_status(ids["running"], "running")
    store.set_run_status(ids["completed"], "completed")

    assert [run.id for run in store.runs_to_resume()] == [ids["running"]]


def test_list_runs_is_oldest_first(store):
    ids = [store.create_run(f"run-{n}", CONFIG, seed=n, rounds=1) for n in range(3)]

    assert [run.id for run in store.list_runs()] == ids


def test_load_checkpoint_before_any_round_is_none(store):
    run_id = store.create_run("demo", CONFIG, seed=1, rounds=3)

    assert store.load_checkpoint(run_id) is None


def test_load_checkpoint_after_reopen_restores_state_bit_for_bit(store_url):
    state = _state(3)
    with open_store(store_url, chunk_size=SMALL_CHUNK) as first:
        run_id = first.create_run("demo", CONFIG, seed=1, rounds=5)
        first.save_checkpoint(run_id, state)

    with open_store(store_url, chunk_size=SMALL_CHUNK) as second:
        loaded = second.load_checkpoint(run_id)

    assert loaded is not None
    assert loaded.round == 3
    assert loaded.params.bitwise_equal(state.params)
    assert loaded.strategy_state.bitwise_equal(state.strategy_state)
    assert loaded.history == state.history


def test_save_checkpoint_appends_history_and_counts_rounds_done(store, sql):
    run_id = store.create_run("demo", CONFIG, seed=1, rounds=5)

    for number in (1, 2, 3):
        store.save_checkpoint(run_id, _state(number))

    assert store.round_history(run_id) == [_record(n) for n in (1, 2, 3)]
    assert store.get_run(run_id).rounds_done == 3
    assert sql("SELECT count(*) AS n FROM checkpoints")[0].n == 1


def test_save_checkpoint_of_a_rewound_state_drops_later_history(store):
    run_id = store.create_run("demo", CONFIG, seed=1, rounds=5)
    store.save_checkpoint(run_id, _state(3))

    store.save_checkpoint(run_id, _state(1))

    loaded = store.load_checkpoint(run_id)
    assert loaded.round == 1
    assert loaded.history == (_record(1),)
    assert store.get_run(run_id).rounds_done == 1


def test_save_checkpoint_for_unknown_run_is_refused_and_writes_nothing(store, sql):
    with pytest.raises(NotFoundError, match="no run with id 'nope'"):
        store.save_checkpoint("nope", _state(1))

    assert sql("SELECT count(*) AS n FROM blobs")[0].n == 0


def test_load_checkpoint_detects_a_corrupt_parameter_blob(store, sql):
    run_id = store.create_run("demo", CONFIG, seed=1, rounds=5)
    store.save_checkpoint(run_id, _state(1))
    [row] = sql("SELECT params_digest FROM checkpoints")
    sql(
        "UPDATE blob_chunks SET data = :data WHERE seq = 2 AND blob_id = (SELECT id FROM blobs WHERE digest = :d)",
        data=b"\0" * SMALL_CHUNK,
        d=row.params_digest,
    )

    with pytest.raises(StoreError, match=f"blob {row.params_digest} is corrupt: sha256 mismatch"):
        store.load_checkpoint(run_id)


def test_round_history_of_unknown_run_is_refused(store):
    with pytest.raises(NotFoundError, match="no run with id"):
        store.round_history("nope")


def test_checkpoint_stores_exactly_the_encoded_params_and_loads_them_read_only(store, sql):
    state = _state(2)
    run_id = store.create_run("demo", CONFIG, seed=1, rounds=5)

    store.save_checkpoint(run_id, state)
    [row] = sql("SELECT params_digest FROM checkpoints")
    loaded = store.load_checkpoint(run_id)

    assert store.get_blob(row.params_digest) == encode(state.params)
    assert loaded.params.bitwise_equal(state.params)
    assert not any(array.flags.writeable for array in loaded.params.values())


_CHECKPOINT_ONE_MODEL = """
import sys
from pathlib import Path
import numpy as np
from fedlearn.core.params import ParamSet
from fedlearn.engine.engine import RunState
from fedlearn.runtime.store import open_store

def rss(field):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))
    return int(line.split()[1]) * 1024

model = np.random.default_rng(0).standard_normal(50_000_000, dtype=np.float32)  # 200 MB
state = RunState(round=1, params=ParamSet({"w": model}), strategy_state=ParamSet())
with open_store(sys.argv[1]) as store:
    run_id = store.create_run("big", "", seed=0, rounds=1)
    Path("/proc/self/clear_refs").write_text("5")  # the peak restarts from here
    before = rss("VmRSS")
    store.save_checkpoint(run_id, state)
    saved = rss("VmHWM") - before
    del state
    Path("/proc/self/clear_refs").write_text("5")
    before = rss("VmRSS")
    loaded = store.load_checkpoint(run_id)
    assert loaded.params["w"][-1] == model[-1]
    print(saved / model.nbytes, (rss("VmHWM") - before) / model.nbytes)
"""


def test_checkpoint_of_a_large_model_streams_in_and_out_without_a_second_copy(store_url):
    command = [sys.executable, "-c", _CHECKPOINT_ONE_MODEL, store_url]
    run = subprocess.run(command, capture_output=True, text=True, check=True)

    saving, loading = map(float, run.stdout.split())
    # Encoding the model first would cost a whole copy (1.0) on the way in; reading back the
    # chunks and then their join, then decoding a copy, would cost three. What is left is the
    # model itself plus a few of the store's 16 MiB chunk buffers.
    assert saving < 0.6
    assert loading < 1.6
