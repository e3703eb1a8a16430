"""The tables of schema version ``SCHEMA_VERSION``, as SQLAlchemy Core metadata.

These definitions create a fresh store. An older store reaches the same shape through the steps in
``migrations``; a test checks that both paths give identical columns, so change the two together.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

SCHEMA_VERSION = 7


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both backends (SQLite would hand back naive ones)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"timestamps stored must be timezone-aware; got {value!r}")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


metadata = sa.MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ix": "ix_%(table_name)s_%(column_0_name)s",
    }
)

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("token_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime),
    sa.Column("last_seen", UTCDateTime),  # added in version 1
    sa.Column("online", sa.Boolean, nullable=False, server_default=sa.false()),  # added in version 1
    sa.Column("max_examples", sa.BigInteger),  # added in version 3: the rows the operator says it holds
    sa.Column("identity_key", sa.String(64)),  # added in version 4: hex Ed25519 public key for secure aggregation
)

# ``digest`` is NULL only inside the transaction that is still streaming the blob's chunks.
blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("digest", sa.String(64), unique=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("chunks", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

blob_chunks = sa.Table(
    "blob_chunks",
    metadata,
    sa.Column("blob_id", sa.Integer, sa.ForeignKey("blobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("rounds_total", sa.Integer, nullable=False),
    sa.Column("rounds_done", sa.Integer, nullable=False),
    sa.Column("config_toml", sa.Text, nullable=False),
    sa.Column("stop_requested", sa.Boolean, nullable=False, server_default=sa.false()),  # added in version 1
    sa.Column("error", sa.String(64)),  # added in version 2: the class name of the error that failed the run
    # added in version 5: {"round": k, "ledger": ...}, the ledger charged for round k before its tasks left
    sa.Column("privacy_reserved", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# One row per run: its latest checkpoint. Blobs are referenced by digest, the content address.
checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("params_digest", sa.String(64), sa.ForeignKey("blobs.digest"), nullable=False),
    sa.Column("state_digest", sa.String(64), sa.ForeignKey("blobs.digest"), nullable=False),
    sa.Column("saved_at", UTCDateTime, nullable=False),
    sa.Column("ledger", sa.Text),  # added in version 5: PrivacyLedger.to_json() as JSON text; NULL without DP
)

history = sa.Table(
    "history",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("round", sa.Integer, primary_key=True),
    sa.Column("record", sa.Text, nullable=False),  # RoundRecord.to_json() as JSON text
)

# Added in version 6: the model registry. A version is immutable: its row and its package blob
# (a ``fedlearn.registry`` package, safetensors bytes) are written once and never updated.
models = sa.Table(
    "models",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("task", sa.String(16), nullable=False),
    sa.Column("run_id", sa.String(32)),  # the run it was registered from; NULL for an analytics model
    sa.Column("package_digest", sa.String(64), sa.ForeignKey("blobs.digest"), nullable=False),
    sa.Column("package_size", sa.BigInteger, nullable=False),
    sa.Column("lineage", sa.Text, nullable=False),  # JSON object
    sa.Column("input_schema", sa.Text, nullable=False),  # InputSchema.to_json() as JSON text
    sa.Column("created_at", UTCDateTime, nullable=False),
)

# Added in version 6: movable names for versions (``champion``), one row per (model, alias).
model_aliases = sa.Table(
    "model_aliases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("alias", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.ForeignKeyConstraint(["name", "version"], ["models.name", "models.version"]),
)

# -- added in version 7: standing analytics federations (see ``federations``) ---------------------

federations = sa.Table(
    "federations",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("definition", sa.Text, nullable=False),  # JSON: columns, target, task, histograms, models, options
    sa.Column("refresh_seconds", sa.Float),  # NULL: refreshed on demand only
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("refreshed_at", UTCDateTime),  # the last refresh from the nodes; NULL before the first
    sa.Column("report", sa.Text),  # JSON: what the last refresh found (members it could not reach)
)

# One row per batch of data a member contributes: a dataset on that node, summarised on its own.
federation_batches = sa.Table(
    "federation_batches",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("federation", sa.String(64), sa.ForeignKey("federations.name", ondelete="CASCADE"), nullable=False),
    sa.Column("node", sa.String(64), nullable=False),
    sa.Column("dataset", sa.String(200), nullable=False),
    sa.Column("summary_digest", sa.String(64), sa.ForeignKey("blobs.digest")),  # NULL until first summarised
    sa.Column("row_count", sa.BigInteger),
    sa.Column("added_at", UTCDateTime, nullable=False),
    sa.Column("summarised_at", UTCDateTime),
)

# One row per member: the merge of its batches' summaries, and why the last refresh missed it.
federation_members = sa.Table(
    "federation_members",
    metadata,
    sa.Column("federation", sa.String(64), sa.ForeignKey("federations.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("node", sa.String(64), primary_key=True),
    sa.Column("summary_digest", sa.String(64), sa.ForeignKey("blobs.digest")),  # NULL: no batch summarised yet
    sa.Column("row_count", sa.BigInteger, nullable=False),
    sa.Column("stale", sa.Text),  # NULL when current; else why the last refresh kept its previous summary
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# One row per model a federation keeps fitted: its learned arrays (safetensors), or why it could not be fitted.
federation_models = sa.Table(
    "federation_models",
    metadata,
    sa.Column("federation", sa.String(64), sa.ForeignKey("federations.name", ondelete="CASCADE"), primary_key=True),
    sa.Column("model", sa.String(32), primary_key=True),
    sa.Column("params_digest", sa.String(64), sa.ForeignKey("blobs.digest")),  # NULL when ``error`` says why
    sa.Column("row_count", sa.BigInteger, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("fitted_at", UTCDateTime, nullable=False),
)
