"""The privacy ledger in the store: written with its checkpoint, read back on resume, never going backwards."""

import json

import numpy as np
import pytest

from fedlearn.core.errors import NotFoundError, PrivacyError, StoreError
from fedlearn.core.params import ParamSet
from fedlearn.engine.engine import RunState
from fedlearn.engine.history import RoundRecord
from fedlearn.privacy.accountant import FixedSizeSampling, PoissonSampling
from fedlearn.privacy.ledger import Charge, PrivacyLedger
from fedlearn.runtime.store import open_store
from tests.runtime.store.conftest import SMALL_CHUNK

CONFIG = '[run]\nname = "dp"\nrounds = 5\n'
DELTA = 1e-5


def _ledger(rounds: int, *, delta: float = DELTA) -> PrivacyLedger:
    """A ledger as a DP run leaves it after ``rounds`` rounds, plus one unsampled release of the clip count."""
    ledger = PrivacyLedger(delta=delta, method="rdp")
    for _ in range(rounds):
        ledger = ledger.plus(Charge(noise_multiplier=1.1, sampling=PoissonSampling(rate=0.25)))
    return ledger.plus(Charge(noise_multiplier=7.5, count=2))


def _record(number: int, epsilon: float | None) -> RoundRecord:
    return RoundRecord(round=number, sampled=4, replies=4, num_examples=40, duration_s=0.5, bytes_sent=10,
                       bytes_received=10, epsilon=epsilon)  # fmt: skip


def _state(number: int, ledger: PrivacyLedger | None) -> RunState:
    epsilons = [None if ledger is None else _ledger(n).epsilon() for n in range(1, number + 1)]
    return RunState(
        round=number,
        params=ParamSet({"w": np.full(3, float(number))}),
        strategy_state=ParamSet(),
        history=tuple(_record(n, eps) for n, eps in zip(range(1, number + 1), epsilons, strict=True)),
        ledger=ledger,
    )


def test_checkpoint_ledger_after_reopen_is_the_one_saved(store_url):
    ledger = _ledger(3).plus(Charge(rho=0.01))
    with open_store(store_url, chunk_size=SMALL_CHUNK) as first:
        run_id = first.create_run("dp", CONFIG, seed=1, rounds=5)
        first.save_checkpoint(run_id, _state(3, ledger))

    with open_store(store_url, chunk_size=SMALL_CHUNK) as second:
        loaded = second.load_checkpoint(run_id)
        alone = second.privacy_ledger(run_id)

    assert loaded is not None
    assert loaded.ledger == alone == ledger
    assert loaded.ledger.epsilon() == ledger.epsilon()


def test_checkpoint_ledger_with_fixed_size_sampling_round_trips(store):
    ledger = PrivacyLedger(delta=DELTA, charges=(Charge(noise_multiplier=0.9, sampling=FixedSizeSampling(
        population=100, sample=10), count=4),))  # fmt: skip
    run_id = store.create_run("dp", CONFIG, seed=1, rounds=5)

    store.save_checkpoint(run_id, _state(4, ledger))

    assert store.privacy_ledger(run_id) == ledger


def test_checkpoint_history_keeps_each_rounds_epsilon(store):
    run_id = store.create_run("dp", CONFIG, seed=1, rounds=5)

    store.save_checkpoint(run_id, _state(2, _ledger(2)))

    assert [r.epsilon for r in store.round_history(run_id)] == [_ledger(1).epsilon(), _ledger(2).epsilon()]


def test_history_row_written_before_epsilon_existed_loads_with_epsilon_none(store, sql):
    run_id = store.create_run("old", CONFIG, seed=1, rounds=5)
    store.save_checkpoint(run_id, _state(1, None))
    old = {k: v for k, v in _record(1, None).to_json().items() if k not in ("epsilon", "secure", "survived", "dropped")}
    sql("UPDATE history SET record = :r WHERE run_id = :id", r=json.dumps(old), id=run_id)

    [record] = store.round_history(run_id)

    assert record == _record(1, None)


def test_run_without_differential_privacy_has_no_ledger(store):
    run_id = store.create_run("plain", CONFIG, seed=1, rounds=5)

    store.save_checkpoint(run_id, _state(2, None))

    assert store.load_checkpoint(run_id).ledger is None
    assert store.privacy_ledger(run_id) is None


def test_privacy_ledger_before_the_first_checkpoint_is_none(store):
    run_id = store.create_run("dp", CONFIG, seed=1, rounds=5)

    assert store.privacy_ledger(run_id) is None


def test_privacy_ledger_of_an_unknown_run_is_refused(store):
    with pytest.raises(NotFoundError, match="no run with id 'nope'"):
        store.privacy_ledger("nope")


def test_checkpoint_ledger_grows_with_each_round(store):
    run_id = store.create_run("dp", CONFIG, seed=1, rounds=5)

    for number in (1, 2, 3):
        store.save_checkpoint(run_id, _state(number, _ledger(number)))

    assert store.privacy_ledger(run_id) == _ledger(3)


@pytest.mark.parametrize(
    ("older", "what"),
    [
        (_ledger(2), "fewer charges"),
        (None, "no ledger"),
        (_ledger(3, delta=1e-3), "another delta"),
        (PrivacyLedger(delta=DELTA, method="pld", charges=_ledger(3).charges), "another accountant"),
    ],
)
def test_checkpoint_whose_ledger_lacks_spent_privacy_is_refused_and_the_stored_one_kept(store, older, what):
    run_id = store.create_run("dp", CONFIG, seed=1, rounds=5)
    store.save_checkpoint(run_id, _state(3, _ledger(3)))

    with pytest.raises(PrivacyError, match=r"does not contain the one already stored .*cannot be refunded"):
        store.save_checkpoint(run_id, _state(2, older))

    assert store.privacy_ledger(run_id) == _ledger(3)
    assert store.load_checkpoint(run_id).round == 3


@pytest.mark.parametrize(
    "damage",
    ["{not json", '{"method": "rdp", "charges": []}', '{"delta": 2.0}', '[1, 2]',
     '{"delta": 1e-5, "charges": [{"noise_multiplier": -1.0}]}'],
)  # fmt: skip
def test_damaged_ledger_in_the_store_is_refused_in_one_line_rather_than_guessed(store, sql, damage):
    run_id = store.create_run("dp", CONFIG, seed=1, rounds=5)
    store.save_checkpoint(run_id, _state(1, _ledger(1)))
    sql("UPDATE checkpoints SET ledger = :l WHERE run_id = :id", l=damage, id=run_id)

    with pytest.raises(StoreError, match=rf"^run {run_id}'s privacy ledger in the store is damaged \(.*restore"):
        store.load_checkpoint(run_id)
    with pytest.raises(StoreError, match="privacy ledger in the store is damaged"):
        store.privacy_ledger(run_id)


def test_epsilons_are_each_dp_runs_latest_recorded_epsilon(store):
    dp_id = store.create_run("dp", CONFIG, seed=1, rounds=5)
    store.save_checkpoint(dp_id, _state(2, _ledger(2)))
    plain_id = store.create_run("plain", CONFIG, seed=1, rounds=5)
    store.save_checkpoint(plain_id, _state(2, None))
    store.create_run("pending", CONFIG, seed=1, rounds=5)

    assert store.epsilons() == {dp_id: _ledger(2).epsilon()}
    assert store.epsilons(dp_id) == {dp_id: _ledger(2).epsilon()}
    assert store.epsilons(plain_id) == {}


def test_reserved_ledger_after_reopen_is_the_last_one_reserved(store_url):
    with open_store(store_url, chunk_size=SMALL_CHUNK) as first:
        run_id = first.create_run("dp", CONFIG, seed=1, rounds=5)
        assert first.reserved_privacy(run_id) is None
        first.reserve_privacy(run_id, 1, _ledger(1))
        first.save_checkpoint(run_id, _state(1, _ledger(1)))
        first.reserve_privacy(run_id, 2, _ledger(2))  # round 2 began releasing; no checkpoint records it

    with open_store(store_url, chunk_size=SMALL_CHUNK) as second:
        assert second.reserved_privacy(run_id) == (2, _ledger(2))
        assert second.privacy_ledger(run_id) == _ledger(1)


def test_reserving_for_an_unknown_run_is_refused(store):
    with pytest.raises(NotFoundError, match="no run with id 'nope'"):
        store.reserve_privacy("nope", 1, _ledger(1))


@pytest.mark.parametrize("damage", ["{not json", '{"round": 1}', '{"round": 1, "ledger": {"delta": 2.0}}'])
def test_damaged_reserved_ledger_is_refused_in_one_line_rather_than_guessed(store, sql, damage):
    run_id = store.create_run("dp", CONFIG, seed=1, rounds=5)
    sql("UPDATE runs SET privacy_reserved = :r WHERE id = :id", r=damage, id=run_id)

    with pytest.raises(StoreError, match=rf"^run {run_id}'s reserved privacy ledger in the store is damaged"):
        store.reserved_privacy(run_id)
