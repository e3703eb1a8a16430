"""Requests and answers of federated scoring and evaluation, shared by the coordinator's API and its client.

Kept apart from :mod:`~fedlearn.registry.remote_scoring` so that a client reading an answer
imports pydantic and nothing of the node side.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fedlearn.core.errors import ConfigError

DEFAULT_BINS = 1000
"""Equal bins over [0, 1] of each class probability, for the AUC's score histograms."""
_SQL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
RESERVED = ("prediction", "model_version", "scored_at")
"""The prediction table's own columns (batch scoring's layout), which no key may be named."""


def check_table_name(name: object, what: str = "write table") -> str:
    """A table or column name that cannot carry SQL: letters, digits and _, at most 63, not starting with a digit."""
    if not isinstance(name, str) or not _SQL_NAME.fullmatch(name):
        raise ConfigError(f"`{what}` must be letters, digits and _ (at most 63, no digit first); got {name!r}")
    return name


def check_keys(keys: object) -> tuple[str, ...]:
    if not isinstance(keys, list | tuple) or not keys or len(set(keys)) != len(keys):
        raise ConfigError(f"`keys` must name one or more distinct key columns; got {keys!r}")
    for key in keys:
        check_table_name(key, "keys")
        if key in RESERVED or key.startswith("probability_"):
            raise ConfigError(f"`keys` must not use the prediction table's own columns {list(RESERVED)}; got {key!r}")
    return tuple(keys)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _FleetRequest(_Strict):
    dataset: str = Field(min_length=1, max_length=200, description="the dataset's name on every node")
    nodes: list[str] | None = Field(default=None, description="the nodes to ask (absent: every connected node)")
    timeout: float = Field(default=300.0, gt=0, le=86_400, description="seconds every node has to answer")
    wait: float = Field(default=10.0, ge=0, le=3600, description="seconds to wait for a training run to free the nodes")


class ScoreRequest(_FleetRequest):
    """Score ``dataset`` on each node into its table ``write``, one row per ``keys``."""

    write: str = Field(description="the prediction table each node writes into its own database")
    keys: list[str] = Field(min_length=1, max_length=16, description="the key column(s) of a row")
    restart: bool = Field(default=False, description="score every row again, ignoring an interrupted run's progress")

    def check(self) -> None:
        check_table_name(self.write)
        check_keys(self.keys)


class EvaluateRequest(_FleetRequest):
    """Evaluate on ``dataset``'s held-out rows of each node; ``bins`` for the AUC's score histograms."""

    bins: int = Field(default=DEFAULT_BINS, ge=1, description="equal bins over [0, 1] of each class probability")


class ScoringAnswer(BaseModel):
    """``POST /api/models/{ref}/score``: per node ``ok``, ``error``, ``rows_scored``, ``rows_skipped`` and
    ``predicted`` (label -> count) or ``prediction_mean``; ``pooled`` the totals."""

    model: str
    dataset: str
    table: str
    nodes: dict[str, dict[str, Any]]
    pooled: dict[str, Any]


class EvaluationAnswer(BaseModel):
    """``POST /api/models/{ref}/evaluate``: per node its metrics (or ``error``), and the pooled sums' metrics."""

    model: str
    dataset: str
    task: str
    classes: list[Any]
    bins: int
    nodes: dict[str, dict[str, Any]]
    pooled: dict[str, Any] | None
