"""What the store hands back: plain frozen records, detached from the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

RunStatus = Literal["pending", "running", "completed", "failed", "stopped"]
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
NodeStatus = Literal["online", "offline"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRecord:
    """A registered node as ``fedlearn nodes list`` shows it; the token hash never leaves the store."""

    name: str
    created_at: datetime
    revoked: bool
    last_seen: datetime | None
    status: NodeStatus
    max_examples: int | None = None
    """The rows the operator declared the node holds; a reply claiming more examples is rejected."""
    identity_key: str | None = None
    """The hex Ed25519 public key that signs the node's secure-aggregation keys; None until it is bound."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """A run's identity, progress and outcome; its model and history are in its checkpoint.

    ``error`` is the class name of the fedlearn error that failed the run (``"QuorumError"``), so
    whoever follows the run can report it as that error. It is None unless ``status`` is ``"failed"``,
    and also for a run failed by an internal error (a bug, which ``message`` names) or failed in a
    store older than schema version 2.
    """

    id: str
    name: str
    status: RunStatus
    message: str
    seed: int
    rounds_total: int
    rounds_done: int
    stop_requested: bool
    error: str | None
    created_at: datetime
    updated_at: datetime
    config_toml: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRecord:
    """One registered model version as the registry lists it; its package is the blob ``digest``.

    ``lineage`` and ``input_schema`` are the JSON the package holds too, kept beside it so that
    listing versions reads no package. ``aliases`` are the names pointing at this version now.
    """

    name: str
    version: int
    kind: str
    model: str
    task: str
    run_id: str | None
    digest: str
    size: int
    lineage: dict[str, Any]
    input_schema: list[dict[str, Any]]
    created_at: datetime
    aliases: tuple[str, ...] = ()
