"""Runs, their checkpoints and their round history.

A checkpoint is the latest :class:`RunState` of a run: two blobs (parameters and strategy state,
as safetensors bytes), the round number, the privacy ledger under differential privacy, and the
history rows up to that round. The caller writes all of it in one transaction, so a crash at any
instant leaves the previous checkpoint or the new one, never a mix: a resumed run's ledger is the
one of the model it resumes from.

The ledger only grows. Privacy spent on a release cannot be taken back by going back to an older
state, so a checkpoint whose ledger lacks charges the stored one holds is refused.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from fedlearn.core.codec import decode
from fedlearn.core.errors import ConfigError, NotFoundError, PrivacyError, StoreError
from fedlearn.engine.engine import RunState
from fedlearn.engine.history import RoundRecord
from fedlearn.privacy.ledger import PrivacyLedger
from fedlearn.runtime.store import blobs
from fedlearn.runtime.store.records import RUN_STATUSES, RunRecord, RunStatus
from fedlearn.runtime.store.schema import checkpoints, history, runs, utcnow

_INT64 = (-(2**63), 2**63 - 1)
_ERROR_NAME_LENGTH = 64  # the width of ``runs.error``


def create_run(conn: Connection, name: str, config_toml: str, *, seed: int, rounds: int) -> str:
    """Record a new pending run and return its id (32 hex characters)."""
    if not isinstance(name, str) or not 1 <= len(name) <= 200:
        raise ConfigError(f"run name must be 1-200 characters; got {name!r}")
    if not isinstance(rounds, int) or rounds < 0:
        raise ConfigError(f"`rounds` must be an int >= 0; got {rounds!r}")
    if not isinstance(seed, int) or not _INT64[0] <= seed <= _INT64[1]:
        raise ConfigError(f"`seed` must be an int that fits in 64 signed bits; got {seed!r}")
    run_id = uuid.uuid4().hex
    now = utcnow()
    conn.execute(
        sa.insert(runs).values(
            id=run_id,
            name=name,
            status="pending",
            message="",
            seed=seed,
            rounds_total=rounds,
            rounds_done=0,
            config_toml=config_toml,
            stop_requested=False,
            created_at=now,
            updated_at=now,
        )
    )
    return run_id


def get_run(conn: Connection, run_id: str, *, lock: bool = False) -> RunRecord:
    query = sa.select(runs).where(runs.c.id == run_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFoundError(f"no run with id {run_id!r} in this store; `fedlearn runs list` shows the runs")
    return _run_record(row)


def list_runs(conn: Connection, *, status: RunStatus | None = None) -> list[RunRecord]:
    """All runs, oldest first, optionally only those with ``status``."""
    query = sa.select(runs).order_by(runs.c.created_at, runs.c.id)
    if status is not None:
        query = query.where(runs.c.status == _check_status(status))
    return [_run_record(row) for row in conn.execute(query)]


def set_run_status(
    conn: Connection, run_id: str, status: RunStatus, message: str = "", *, error: str | None = None
) -> None:
    """Record the run's status and message; ``error``, the failing error's class name, goes only with ``failed``."""
    _check_status(status)
    if error is not None and status != "failed":
        raise ConfigError(f"`error` names what failed a run, so it needs status 'failed'; got status {status!r}")
    if error is not None and not 1 <= len(error) <= _ERROR_NAME_LENGTH:
        raise ConfigError(f"`error` must be a class name of 1-{_ERROR_NAME_LENGTH} characters; got {error!r}")
    _update_run(conn, run_id, status=status, message=message, error=error)


def reopen_run(conn: Connection, run_id: str, message: str) -> None:
    """Queue a run again, keeping its checkpoints, so the coordinator resumes it from the last one."""
    _update_run(conn, run_id, status="pending", message=message, error=None, stop_requested=False)


def request_stop(conn: Connection, run_id: str) -> None:
    """Ask the coordinator to stop the run after its current round; it polls :func:`stop_requested`."""
    _update_run(conn, run_id, stop_requested=True)


def _check_status(status: str) -> str:
    if status not in RUN_STATUSES:
        raise ConfigError(f"run status must be one of {', '.join(RUN_STATUSES)}; got {status!r}")
    return status


def _update_run(conn: Connection, run_id: str, **values: Any) -> None:
    result = conn.execute(sa.update(runs).where(runs.c.id == run_id).values(updated_at=utcnow(), **values))
    if result.rowcount == 0:
        get_run(conn, run_id)  # raises the "no run" error


def _run_record(row: Row[Any]) -> RunRecord:
    return RunRecord(
        id=row.id,
        name=row.name,
        status=row.status,
        message=row.message,
        seed=row.seed,
        rounds_total=row.rounds_total,
        rounds_done=row.rounds_done,
        stop_requested=bool(row.stop_requested),
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        config_toml=row.config_toml,
    )


def save_checkpoint(
    conn: Connection,
    run_id: str,
    *,
    round_number: int,
    round_history: Sequence[RoundRecord],
    params_blob: blobs.BlobData,
    state_blob: blobs.BlobData,
    ledger: PrivacyLedger | None,
    chunk_size: int,
) -> None:
    """Write a run's new checkpoint: blobs, checkpoint row with its ledger, new history rows and ``rounds_done``.

    History is append-only: records already stored are kept, rows past ``round_number`` (left by a
    state that was rewound) are dropped. The ledger is not: see the module docstring.
    """
    get_run(conn, run_id, lock=True)  # one checkpoint writer per run at a time, and a clear error
    _check_ledger_grows(run_id, _stored_ledger(conn, run_id), ledger)
    now = utcnow()
    values = {
        "round": round_number,
        "params_digest": blobs.put_blob(conn, params_blob, chunk_size=chunk_size),
        "state_digest": blobs.put_blob(conn, state_blob, chunk_size=chunk_size),
        "saved_at": now,
        "ledger": None if ledger is None else json.dumps(ledger.to_json()),
    }
    updated = conn.execute(sa.update(checkpoints).where(checkpoints.c.run_id == run_id).values(**values))
    if updated.rowcount == 0:
        conn.execute(sa.insert(checkpoints).values(run_id=run_id, **values))
    conn.execute(sa.delete(history).where(history.c.run_id == run_id, history.c.round > round_number))
    stored = set(conn.scalars(sa.select(history.c.round).where(history.c.run_id == run_id)))
    new_rows = [
        {"run_id": run_id, "round": record.round, "record": json.dumps(record.to_json())}
        for record in round_history
        if record.round not in stored and record.round <= round_number
    ]
    if new_rows:
        conn.execute(sa.insert(history), new_rows)
    conn.execute(sa.update(runs).where(runs.c.id == run_id).values(rounds_done=round_number, updated_at=now))


def load_checkpoint(conn: Connection, run_id: str) -> RunState | None:
    """The run's latest checkpoint with both blobs verified, or None if it has none yet."""
    get_run(conn, run_id)
    row = conn.execute(sa.select(checkpoints).where(checkpoints.c.run_id == run_id)).first()
    if row is None:
        return None
    params_blob = blobs.read_blob_view(conn, row.params_digest)
    state_blob = blobs.read_blob_view(conn, row.state_digest)
    return RunState(
        round=row.round,
        params=decode(params_blob, max_bytes=len(params_blob)),
        strategy_state=decode(state_blob, max_bytes=len(state_blob)),
        history=tuple(_history(conn, run_id)),
        ledger=_ledger(run_id, row.ledger),
    )


def reserve_privacy(conn: Connection, run_id: str, round_number: int, ledger: PrivacyLedger) -> None:
    """Record ``ledger``, the run's ledger with round ``round_number`` already charged, before that round releases."""
    text = json.dumps({"round": round_number, "ledger": ledger.to_json()})
    result = conn.execute(sa.update(runs).where(runs.c.id == run_id).values(privacy_reserved=text))
    if result.rowcount == 0:
        raise NotFoundError(f"no run with id {run_id!r} in this store; `fedlearn runs list` shows the runs")


def reserved_privacy(conn: Connection, run_id: str) -> tuple[int, PrivacyLedger] | None:
    """The last reservation: the round it was made for and the ledger with that round charged; None if none."""
    text = conn.scalar(sa.select(runs.c.privacy_reserved).where(runs.c.id == run_id))
    if text is None:
        return None
    try:
        data = json.loads(text)
        return int(data["round"]), PrivacyLedger.from_json(data["ledger"])
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(
            f"run {run_id}'s reserved privacy ledger in the store is damaged ({type(exc).__name__}: {exc}); the "
            "privacy a round cut short by a crash spent cannot be known, so the run cannot go on"
        ) from None


def privacy_ledger(conn: Connection, run_id: str) -> PrivacyLedger | None:
    """The ledger of the run's latest checkpoint, without reading its blobs; None without DP or a checkpoint."""
    get_run(conn, run_id)
    return _stored_ledger(conn, run_id)


def epsilons(conn: Connection, run_id: str | None = None) -> dict[str, float]:
    """ε each DP run had spent at its last checkpoint, by run id (only ``run_id``'s, if given).

    Read from the record of each checkpoint's round, where the engine wrote the ledger's ε, so
    listing runs composes no ledger. Runs without DP, or without a round, are absent.
    """
    at_checkpoint = sa.and_(checkpoints.c.run_id == history.c.run_id, checkpoints.c.round == history.c.round)
    query = sa.select(history.c.run_id, history.c.record).join(checkpoints, at_checkpoint)
    query = query.where(checkpoints.c.ledger.is_not(None))
    if run_id is not None:
        query = query.where(history.c.run_id == run_id)
    spent = {row.run_id: json.loads(row.record).get("epsilon") for row in conn.execute(query)}
    return {run: float(epsilon) for run, epsilon in spent.items() if epsilon is not None}


def _stored_ledger(conn: Connection, run_id: str) -> PrivacyLedger | None:
    return _ledger(run_id, conn.scalar(sa.select(checkpoints.c.ledger).where(checkpoints.c.run_id == run_id)))


def _ledger(run_id: str, text: str | None) -> PrivacyLedger | None:
    """The stored ledger, or a one-line StoreError if it is damaged: a run must not go on from a guess."""
    if text is None:
        return None
    try:
        return PrivacyLedger.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # bad JSON, a missing or mistyped field
        raise StoreError(
            f"run {run_id}'s privacy ledger in the store is damaged ({type(exc).__name__}: {exc}); the privacy it "
            "spent is unknown, so restore the store from a backup rather than resume it"
        ) from None


def _check_ledger_grows(run_id: str, stored: PrivacyLedger | None, new: PrivacyLedger | None) -> None:
    """Refuse a ledger that would forget privacy already spent: every stored charge, at least as often."""
    if stored is None:
        return
    counts = {} if new is None else {charge.key(): charge.count for charge in new.charges}
    same_terms = new is not None and (new.delta, new.method) == (stored.delta, stored.method)
    if not same_terms or any(counts.get(charge.key(), 0) < charge.count for charge in stored.charges):
        raise PrivacyError(
            f"run {run_id}: the checkpoint's privacy ledger ({_describe(new)}) does not contain the one already "
            f"stored ({_describe(stored)}); privacy spent cannot be refunded, so the checkpoint is refused"
        )


def _describe(ledger: PrivacyLedger | None) -> str:
    if ledger is None:
        return "none"
    spent = sum(charge.count for charge in ledger.charges)
    return f"{spent} charge(s) at delta {ledger.delta:g}, {ledger.method}"


def round_history(conn: Connection, run_id: str) -> list[RoundRecord]:
    """The recorded rounds of the run's latest checkpoint, in order."""
    get_run(conn, run_id)
    return _history(conn, run_id)


def _history(conn: Connection, run_id: str) -> list[RoundRecord]:
    query = sa.select(history.c.record).where(history.c.run_id == run_id).order_by(history.c.round)
    return [RoundRecord.from_json(json.loads(text)) for text in conn.scalars(query)]
