"""What the store hands back: plain frozen records, detached from the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

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


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """A run's identity, progress and outcome; its model and history are in its checkpoint."""

    id: str
    name: str
    status: RunStatus
    message: str
    seed: int
    rounds_total: int
    rounds_done: int
    stop_requested: bool
    created_at: datetime
    updated_at: datetime
    config_toml: str
