"""The :class:`Store` facade: one object the coordinator, the CLI and the HTTP API share.

Each method is one transaction: reads see one snapshot, writes commit entirely or not at all. The
work itself lives in ``nodes``, ``blobs`` and ``runs`` as functions of a connection, so a method
that must combine several pieces atomically (a checkpoint writes blobs, rows and a counter) just
calls them inside one transaction.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime
from types import TracebackType

from fedlearn.core.codec import encode_parts
from fedlearn.engine.engine import RunState
from fedlearn.engine.history import RoundRecord
from fedlearn.privacy.ledger import PrivacyLedger
from fedlearn.runtime.store import blobs, federations, models, nodes, runs
from fedlearn.runtime.store.connection import Database, parse_store_url
from fedlearn.runtime.store.migrations import ensure_schema
from fedlearn.runtime.store.records import ModelRecord, NodeRecord, RunRecord, RunStatus


class Store:
    """Durable coordinator state in SQLite or PostgreSQL; see the package docstring for the rules.

    Opening connects, then creates, migrates or refuses the schema, so a bad URL, a dead server or
    a store from a newer fedlearn fails here with one clear :class:`StoreError`. Safe to share
    between threads; each process opens its own.
    """

    def __init__(self, url: str, *, chunk_size: int = blobs.DEFAULT_CHUNK_SIZE) -> None:
        self._chunk_size = blobs.check_chunk_size(chunk_size)
        self._db = Database(parse_store_url(url))
        try:
            ensure_schema(self._db)
        except BaseException:
            self._db.close()
            raise

    @property
    def url(self) -> str:
        """Where the store lives, with any password hidden: safe to print."""
        return self._db.display

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def close(self) -> None:
        """Release pooled connections. The store must not be used afterwards."""
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # Nodes

    def add_node(self, name: str, *, max_examples: int | None = None, identity_key: bytes | None = None) -> str:
        """Register a node and return its token. Only a hash is kept: show the token now or lose it.

        ``max_examples`` declares the rows the node holds: a reply claiming more is rejected.
        ``identity_key`` pins its Ed25519 public key; without it, the node's first session binds one.
        """
        with self._db.write() as conn:
            return nodes.add_node(conn, name, max_examples=max_examples, identity_key=identity_key)

    def declare_rows(self, name: str, max_examples: int | None) -> None:
        """Set or clear the row count declared for an active node."""
        with self._db.write() as conn:
            nodes.declare_rows(conn, name, max_examples)

    def declared_rows(self) -> dict[str, int]:
        """Active nodes' declared row counts, by name, for the nodes that have one."""
        with self._db.read() as conn:
            return nodes.declared_rows(conn)

    def set_identity_key(self, name: str, identity_key: bytes | None) -> None:
        """Pin an active node's identity key, or forget it (None) so that its next session binds one."""
        with self._db.write() as conn:
            nodes.set_identity_key(conn, name, identity_key)

    def bind_identity_key(self, name: str, identity_key: bytes) -> str | None:
        """Bind a node's presented identity key on first use; why a different key is refused, else None."""
        with self._db.write() as conn:
            return nodes.bind_identity_key(conn, name, identity_key)

    def identity_keys(self) -> dict[str, bytes]:
        """Active nodes' registered identity keys, by name: whom secure aggregation can include."""
        with self._db.read() as conn:
            return nodes.identity_keys(conn)

    def rotate_token(self, name: str) -> str:
        """Issue an active node a new token; the old one is refused from the commit on."""
        with self._db.write() as conn:
            return nodes.rotate_token(conn, name)

    def revoke_node(self, name: str) -> None:
        with self._db.write() as conn:
            nodes.revoke_node(conn, name)

    def list_nodes(self) -> list[NodeRecord]:
        with self._db.read() as conn:
            return nodes.list_nodes(conn)

    def authenticate(self, name: str, token: str) -> bool:
        """False for an unknown, revoked or malformed name and for a wrong token; constant-time."""
        with self._db.read() as conn:
            return nodes.authenticate(conn, name, token)

    def mark_node(self, name: str, online: bool) -> None:
        """Record presence: ``last_seen`` becomes now and the status online or offline."""
        with self._db.write() as conn:
            nodes.mark_node(conn, name, online=online)

    def mark_all_nodes_offline(self) -> int:
        """Forget presence left behind by a coordinator that died; returns how many were online."""
        with self._db.write() as conn:
            return nodes.mark_all_nodes_offline(conn)

    # Blobs

    def put_blob(self, data: blobs.BlobData) -> str:
        """Store bytes, or an iterable of byte chunks, and return the sha256 hex digest; idempotent."""
        with self._db.write() as conn:
            return blobs.put_blob(conn, data, chunk_size=self._chunk_size)

    def get_blob(self, digest: str) -> bytes:
        """The whole blob, sha256-verified. For blobs too big to hold twice, use :meth:`iter_blob`."""
        with self._db.read() as conn:
            return blobs.read_blob(conn, digest)

    def iter_blob(self, digest: str) -> Iterator[bytes]:
        """Stream the blob chunk by chunk; corruption raises after the last chunk, so consume it all."""
        with self._db.read() as conn:
            yield from blobs.iter_blob(conn, digest)

    def has_blob(self, digest: str) -> bool:
        with self._db.read() as conn:
            return blobs.has_blob(conn, digest)

    def delete_unreferenced_blobs(self) -> int:
        """Delete blobs no checkpoint (or other row) refers to; returns how many were deleted."""
        with self._db.write() as conn:
            return blobs.delete_unreferenced_blobs(conn)

    # Runs

    def create_run(self, name: str, config_toml: str, *, seed: int, rounds: int) -> str:
        """Record a new pending run and return its id (uuid4 hex)."""
        with self._db.write() as conn:
            return runs.create_run(conn, name, config_toml, seed=seed, rounds=rounds)

    def get_run(self, run_id: str) -> RunRecord:
        with self._db.read() as conn:
            return runs.get_run(conn, run_id)

    def list_runs(self, *, status: RunStatus | None = None) -> list[RunRecord]:
        """All runs, oldest first, optionally only those with ``status``."""
        with self._db.read() as conn:
            return runs.list_runs(conn, status=status)

    def set_run_status(self, run_id: str, status: RunStatus, message: str = "", *, error: str | None = None) -> None:
        """Record the run's status and message; for a failed run, ``error`` is the failing error's class name."""
        with self._db.write() as conn:
            runs.set_run_status(conn, run_id, status, message, error=error)

    def reopen_run(self, run_id: str, message: str) -> None:
        """Queue a run again with its checkpoints, so the coordinator resumes it where it stopped."""
        with self._db.write() as conn:
            runs.reopen_run(conn, run_id, message)

    def request_stop(self, run_id: str) -> None:
        """Ask the coordinator to stop the run after its current round."""
        with self._db.write() as conn:
            runs.request_stop(conn, run_id)

    def stop_requested(self, run_id: str) -> bool:
        return self.get_run(run_id).stop_requested

    def runs_to_resume(self) -> list[RunRecord]:
        """Runs left ``running``: a coordinator that starts resumes each from its checkpoint."""
        return self.list_runs(status="running")

    # Checkpoints

    def save_checkpoint(self, run_id: str, state: RunState) -> None:
        """Make ``state`` the run's checkpoint atomically: after a crash, this one or the previous.

        The blobs stream from the arrays into the store one chunk at a time (see
        ``core.codec.encode_parts``), so a checkpoint costs no second copy of the model, and the
        bytes stored are exactly ``encode``'s. The privacy ledger is written in the same
        transaction, and a ledger that lacks charges already stored is refused with a ``PrivacyError``.
        """
        params_blob = encode_parts(state.params)
        state_blob = encode_parts(state.strategy_state)
        with self._db.write() as conn:
            runs.save_checkpoint(
                conn,
                run_id,
                round_number=state.round,
                round_history=state.history,
                params_blob=params_blob,
                state_blob=state_blob,
                ledger=state.ledger,
                chunk_size=self._chunk_size,
            )

    def load_checkpoint(self, run_id: str) -> RunState | None:
        """The last checkpoint, digests verified, or None if the run has not finished a round."""
        with self._db.read() as conn:
            return runs.load_checkpoint(conn, run_id)

    def round_history(self, run_id: str) -> list[RoundRecord]:
        with self._db.read() as conn:
            return runs.round_history(conn, run_id)

    def progress(self, run_id: str) -> tuple[list[RoundRecord], PrivacyLedger | None]:
        """The run's recorded rounds and its privacy ledger, read from one snapshot so that they agree."""
        with self._db.read() as conn:
            return runs.round_history(conn, run_id), runs.privacy_ledger(conn, run_id)

    def epsilons(self, run_id: str | None = None) -> dict[str, float]:
        """ε spent by each DP run (or by ``run_id`` only) as of its last checkpoint; runs without DP are absent."""
        with self._db.read() as conn:
            return runs.epsilons(conn, run_id)

    def reserve_privacy(self, run_id: str, round_number: int, ledger: PrivacyLedger) -> None:
        """Record the run's ledger with round ``round_number`` charged, before any of that round's tasks leave.

        A round's releases (noised updates under local DP, the new model sent out for evaluation)
        may leave before its checkpoint is written; a coordinator killed in between resumes with
        this ledger (:meth:`reserved_privacy`), so the round it redoes is charged on top of the one
        it lost, never instead of it.
        """
        with self._db.write() as conn:
            runs.reserve_privacy(conn, run_id, round_number, ledger)

    def reserved_privacy(self, run_id: str) -> tuple[int, PrivacyLedger] | None:
        """The round of the run's last reservation and the ledger with it charged; None if it never reserved."""
        with self._db.read() as conn:
            return runs.reserved_privacy(conn, run_id)

    def privacy_ledger(self, run_id: str) -> PrivacyLedger | None:
        """The privacy spent up to the run's last checkpoint; None for a run without DP or before its first round.

        Reads one row, not the checkpoint's blobs, so following a run can ask for it every poll.
        """
        with self._db.read() as conn:
            return runs.privacy_ledger(conn, run_id)

    # Model registry

    def add_model(
        self,
        name: str,
        *,
        kind: str,
        model: str,
        task: str,
        run_id: str | None,
        lineage: dict[str, object],
        input_schema: list[dict[str, object]],
        created_at: datetime,
        package: Callable[[int], bytes],
    ) -> ModelRecord:
        """Register the next version of ``name``, whose package bytes ``package(version)`` makes."""
        with self._db.write() as conn:
            return models.add_model(
                conn,
                name,
                kind=kind,
                model=model,
                task=task,
                run_id=run_id,
                lineage=lineage,
                input_schema=input_schema,
                created_at=created_at,
                package=package,
                chunk_size=self._chunk_size,
            )

    def list_models(self, name: str | None = None) -> list[ModelRecord]:
        """Every registered version (only ``name``'s, if given), by name then version, with aliases."""
        with self._db.read() as conn:
            return models.list_models(conn, name)

    def get_model(self, name: str, version: int) -> ModelRecord:
        with self._db.read() as conn:
            return models.get_model(conn, name, version)

    def resolve_model(self, name: str, selector: str | int | None = None) -> ModelRecord:
        """The version a number, an alias, or ``None``/``latest`` (the newest) selects."""
        with self._db.read() as conn:
            return models.get_model(conn, name, models.resolve(conn, name, selector))

    def set_model_alias(self, name: str, alias: str, version: int) -> ModelRecord:
        """Point ``alias`` at an existing version, creating or moving it; returns that version."""
        with self._db.write() as conn:
            models.set_alias(conn, name, alias, version)
            return models.get_model(conn, name, version)

    def delete_model_alias(self, name: str, alias: str) -> None:
        with self._db.write() as conn:
            models.delete_alias(conn, name, alias)

    # Federations (schema version 7): standing analytics federations, see ``federations``

    def create_federation(
        self, name: str, definition: str, *, refresh_seconds: float | None, batches: list[tuple[str, str]]
    ) -> None:
        """Record a new federation and its first ``(node, dataset)`` batches, none summarised yet."""
        with self._db.write() as conn:
            federations.create_federation(conn, name, definition, refresh_seconds=refresh_seconds, batches=batches)

    def list_federations(self) -> list[federations.FederationRecord]:
        with self._db.read() as conn:
            return federations.list_federations(conn)

    def federation_state(self, name: str) -> federations.FederationState:
        """A federation with its batches, members and models, read from one snapshot so that they agree."""
        with self._db.read() as conn:
            return federations.FederationState(
                federation=federations.get_federation(conn, name),
                batches=federations.list_batches(conn, name),
                members=federations.list_members(conn, name),
                models=federations.list_models(conn, name),
            )

    def due_federations(self) -> list[str]:
        """Scheduled federations whose refresh is due now."""
        with self._db.read() as conn:
            return federations.due_federations(conn)

    def update_federation(self, name: str, update: federations.FederationUpdate) -> None:
        """Apply one change to a federation atomically: after a crash, all of it or none."""
        with self._db.write() as conn:
            federations.update_federation(conn, name, update, chunk_size=self._chunk_size)

    def delete_federation(self, name: str) -> None:
        with self._db.write() as conn:
            federations.delete_federation(conn, name)


def open_store(url: str | os.PathLike[str], *, chunk_size: int = blobs.DEFAULT_CHUNK_SIZE) -> Store:
    """Open the store at ``url``: ``sqlite:///PATH``, a plain path (SQLite) or ``postgresql://...``."""
    return Store(os.fspath(url), chunk_size=chunk_size)
