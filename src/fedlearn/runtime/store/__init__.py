"""The coordinator's durable state: nodes, runs, checkpoints and parameter blobs.

``open_store(url)`` accepts ``sqlite:///PATH`` (the default, one file beside the coordinator), a
plain path (also SQLite) or ``postgresql://USER@HOST/DB`` (production). Both backends hold the same
tables, written with SQLAlchemy Core:

- ``meta``: ``schema_version``; an older store is migrated on open, a newer one refused.
- ``nodes``: name, sha256 of the current token (never the token), created, revoked and last-seen
  times, online flag.
- ``blobs``: one row per content-addressed blob: sha256 hex digest, size, number of chunks.
- ``blob_chunks``: the bytes, in chunks of at most ``chunk_size`` (16 MiB by default), so a blob of
  any size fits under each backend's per-value limit and streams one chunk at a time.
- ``runs``: id, name, status (pending, running, completed, failed, stopped), message, the class name
  of the error that failed it, seed, rounds total and done, stop flag, config TOML, timestamps.
- ``checkpoints``: one row per run: the round of its latest checkpoint, the digests of its
  parameter and strategy-state blobs (safetensors bytes), and its privacy ledger as JSON (NULL
  for a run without differential privacy).
- ``history``: one row per completed round: the engine's ``RoundRecord`` as JSON.
- ``models``: one immutable row per registered model version: kind, task, the run it came from,
  lineage and input schema as JSON, and the digest of its package blob (see ``models``).
- ``model_aliases``: (model, alias) -> version; the only registry rows that change.

Durability rules, which every change here must keep:

1. **A checkpoint is one transaction.** Blobs, the checkpoint row with its privacy ledger, new
   history rows and ``runs.rounds_done`` commit together, so a SIGKILL or power cut at any
   instant leaves the previous checkpoint or the new one, never a mix. Tests kill a writer
   mid-loop to check this.
2. **Commits reach the disk.** SQLite runs in WAL mode with ``synchronous=FULL``; PostgreSQL
   commits are durable by default. Foreign keys are enforced on both.
3. **Reads are verified.** Every blob read recomputes sha256 and compares it with the address
   the blob is stored under; a mismatch raises ``StoreError`` and is never returned.
4. **Secrets are not stored.** Node tokens are kept as sha256 hashes and shown once, at issue.
5. **Blobs are immutable.** A digest names one content forever; nothing updates a chunk.
   ``delete_unreferenced_blobs`` removes only blobs no foreign key points at.
6. **Spent privacy is never refunded.** A checkpoint whose ledger lacks charges the stored one
   holds is refused, so the ledger in the store never goes backwards.
7. **Errors are one line.** A dead server, a missing directory, a damaged or too-new store gives
   a ``StoreError`` naming the store (password hidden) and what to do.
"""

from fedlearn.runtime.store.blobs import DEFAULT_CHUNK_SIZE
from fedlearn.runtime.store.records import (
    RUN_STATUSES,
    ModelRecord,
    NodeRecord,
    NodeStatus,
    RunRecord,
    RunStatus,
)
from fedlearn.runtime.store.schema import SCHEMA_VERSION
from fedlearn.runtime.store.store import Store, open_store

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "ModelRecord",
    "NodeRecord",
    "NodeStatus",
    "RunRecord",
    "RunStatus",
    "Store",
    "open_store",
]
