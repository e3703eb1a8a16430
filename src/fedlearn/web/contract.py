"""The HTTP API's contract: what each route takes and answers, and the HTTP status of each refusal.

Both ends import this module. The server (:mod:`fedlearn.web.api`) returns these models from its
routes, and FastAPI serialises them; the client (:mod:`fedlearn.web.client`) parses every answer
back into them. A field renamed on one side therefore breaks the other side's tests, not a user's
command. The JSON field names are the API's, and timestamps travel as ISO 8601 text exactly as
Python's ``isoformat`` writes it.

Answers ignore fields they do not know, so an older client can still read a newer coordinator.
The one request that is not here is :class:`fedlearn.analytics.remote.AnalyticsRequest`: it is
validated where it runs, and importing it would load the analytics models into every client.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, PlainSerializer, model_validator

from fedlearn.core import errors
from fedlearn.core.errors import ConfigError, FedlearnError, FleetBusy, NotFoundError, PrivacyError, QuorumError
from fedlearn.engine.history import RoundRecord
from fedlearn.runtime.store.records import RunStatus

Timestamp = Annotated[datetime, PlainSerializer(datetime.isoformat, return_type=str, when_used="json")]
"""A timezone-aware time, as ``2024-05-01T12:00:00+00:00`` on the wire (pydantic alone would write ``Z``)."""

# -- refusals ------------------------------------------------------------------------------------

REFUSALS: Mapping[type[FedlearnError], int] = MappingProxyType(
    {
        ConfigError: 422,
        PrivacyError: 403,
        NotFoundError: 404,
        FleetBusy: 409,
        QuorumError: 503,
    }
)
"""Our errors that refuse a request, each with its own HTTP status: the server answers with the status,
and the client raises the same error again, so the CLI exits with that error's code."""

SERVER_FAILURE = 500
"""The status of any other error of ours: the server failed, and the client reports the coordinator as failing."""

_REFUSED_AS: Mapping[int, type[FedlearnError]] = MappingProxyType({status: kind for kind, status in REFUSALS.items()})


def status_of(error: FedlearnError) -> int:
    """The HTTP status that answers ``error``: its refusal's status (subclasses included), else 500."""
    return next((status for kind, status in REFUSALS.items() if isinstance(error, kind)), SERVER_FAILURE)


def refused_as(status: int) -> type[FedlearnError] | None:
    """The error that a refusal with ``status`` was on the server, or None if ``status`` is no refusal of ours."""
    return _REFUSED_AS.get(status)


class Refusal(BaseModel):
    """The body of every answer that is not a success: one line saying what is wrong and what to do."""

    model_config = ConfigDict(frozen=True)

    detail: str


# -- requests ------------------------------------------------------------------------------------


class RunRequest(BaseModel):
    """``POST /api/runs``: a run config, as the TOML text of a file that ``fedlearn simulate`` would accept."""

    config: str


# -- answers -------------------------------------------------------------------------------------


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True)


class Health(_Answer):
    """``GET /api/health``, the one route that needs no token."""

    status: Literal["ok"]
    nodes_connected: int


class NodeSummary(_Answer):
    """One registered node in ``GET /api/nodes``; ``status`` is whether it is connected right now."""

    name: str
    status: Literal["online", "offline", "revoked"]
    created_at: Timestamp
    last_seen: Timestamp | None


_ERRORS_BY_NAME: Mapping[str, type[FedlearnError]] = MappingProxyType(
    {
        name: value
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, FedlearnError)
    }
)


class RunSummary(_Answer):
    """A run as ``GET /api/runs`` lists it and as submitting or stopping it answers.

    ``error`` is the class name of the fedlearn error that failed the run (``"QuorumError"``); it is
    None unless the run failed, and also when an internal error (a bug, named in ``message``) failed it.
    """

    id: str
    name: str
    status: RunStatus
    message: str
    error: str | None = None  # absent from coordinators whose store predates schema version 2
    seed: int
    rounds_total: int
    rounds_done: int
    stop_requested: bool
    created_at: Timestamp
    updated_at: Timestamp
    epsilon: float | None = None
    """ε spent under differential privacy as of the last round; None without DP or before the first round."""

    @property
    def finished(self) -> bool:
        """Whether the run has ended, one way or another, so following it can stop."""
        return self.status in ("completed", "failed", "stopped")

    def failure(self) -> FedlearnError | None:
        """The error that failed this run, to raise or report where it is followed; None unless it failed.

        It is the coordinator's error class, so it exits the CLI with that error's code (4 for a run
        that could not get its nodes), and its message is the run's. An error this fedlearn does not
        know, or none recorded, comes back as the root :class:`FedlearnError`.
        """
        if self.status != "failed":
            return None
        kind = _ERRORS_BY_NAME.get(self.error or "", FedlearnError)
        return kind(f"run {self.id} failed: {self.message}")


class RunPrivacy(_Answer):
    """A run's differential privacy, as of its last checkpoint: ε spent at δ, the budget, and the ledger.

    ``epsilon`` is what the whole run has spent so far (each round's is ``epsilon`` in its history
    record). ``budget`` is the run's ε limit, None when ε is only reported. ``accountant`` is the
    ``dp-accounting`` method that composed ``charges``, the ledger's entries as
    :meth:`~fedlearn.privacy.ledger.Charge.to_json` writes them, so anyone can recompute ε.
    """

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="constants")  # an ε too large to bound travels as inf

    epsilon: float
    delta: float
    budget: float | None
    accountant: Literal["rdp", "pld"]
    charges: list[dict[str, JsonValue]]


class RunDetail(RunSummary):
    """``GET /api/runs/{id}``: the summary, the run's config, one record per completed round and its privacy.

    ``privacy`` is None for a run without differential privacy; a DP run that has not finished a
    round shows ε = 0 and no charges.
    """

    config: str
    history: list[RoundRecord]
    privacy: RunPrivacy | None = None  # absent from coordinators that predate differential privacy


class AnalyticsMember(_Answer):
    """One member of an analytics answer: which node, its dataset, how many rows and the column types.

    ``rows`` is None under secure aggregation, where no member's count is seen, only the total.
    """

    node: str
    dataset: str
    rows: int | None
    types: dict[str, str]


class DescriptionRow(_Answer):
    """One column of a ``describe`` answer; a statistic that is not finite (unknown after a removal) is None."""

    column: str
    count: float | None
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    sum: float | None


class AnalyticsRelease(_Answer):
    """One differentially private release a member made for an analytics request, and the ε it cost."""

    node: str
    what: str
    epsilon: float


class AnalyticsPrivacy(_Answer):
    """What a request with ``dp`` spent: each member's releases composed (the largest over members), each release."""

    epsilon: float
    delta: float
    noise_multiplier: float
    releases: list[AnalyticsRelease]


class AnalyticsResult(_Answer):
    """``POST /api/analytics``: the members' report and either the fitted model or the ``describe`` table.

    ``attributes`` holds the fitted model's learned arrays (``coef_``, ``classes_``, ...) as nested
    lists, with None where a value is not finite; it is empty for ``describe``, whose table is
    ``description`` instead.
    """

    model: str
    columns: list[str]
    target: str | None
    task: Literal["regression", "classification"]
    rows: int
    members: list[AnalyticsMember]
    problems: list[str]
    secure: bool = False
    attributes: dict[str, JsonValue]
    description: list[DescriptionRow] | None
    privacy: AnalyticsPrivacy | None = None
    """Under ``dp``, the ε the nodes' releases spent; None for exact statistics."""


# -- model registry ------------------------------------------------------------------------------


class RegisterRequest(BaseModel):
    """``POST /api/models``: register the next version of ``name`` from a completed run or an analytics answer.

    Give exactly one of ``run_id`` and ``analytics`` (the JSON ``POST /api/analytics`` answered, with the
    request's ``options``). ``input_schema`` (a list of ``{"name", "type", "categories"}``) replaces the
    default, float columns named by the run config's features or the answer's columns; ``classes`` names
    a run's classes in index order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    run_id: str | None = None
    analytics: dict[str, JsonValue] | None = None
    options: dict[str, JsonValue] | None = None
    input_schema: list[dict[str, JsonValue]] | None = None
    classes: list[str | int | float] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> RegisterRequest:
        if (self.run_id is None) == (self.analytics is None):
            raise ValueError("give exactly one of `run_id` (a completed run) and `analytics` (an analytics answer)")
        if self.analytics is None and self.options is not None:
            raise ValueError("`options` are an analytics request's; a run's options are in its config")
        if self.run_id is None and self.classes is not None:
            raise ValueError("`classes` name a run's classes; an analytics model knows its own")
        return self


class AliasRequest(BaseModel):
    """``PUT /api/models/{name}/aliases/{alias}``: point the alias at ``version``, creating or moving it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)


class ModelVersion(_Answer):
    """One registered, immutable model version: what it is, where it came from and what it takes.

    ``lineage`` holds ``run_id``, ``round``, ``config``, ``strategy``, ``nodes``, ``privacy`` and
    ``metrics`` for a run (see ``fedlearn.registry.package``); ``input_schema`` its input columns.
    """

    name: str
    version: int
    kind: Literal["learner", "analytics"]
    model: str
    task: Literal["classification", "regression"]
    run_id: str | None
    digest: str
    size: int
    created_at: Timestamp
    aliases: list[str]
    lineage: dict[str, JsonValue]
    input_schema: list[dict[str, JsonValue]]


class ModelSummary(_Answer):
    """One registered model in ``GET /api/models``: its newest version and where its aliases point."""

    name: str
    latest: int
    versions: int
    kind: Literal["learner", "analytics"]
    task: Literal["classification", "regression"]
    updated_at: Timestamp
    aliases: dict[str, int]


class ModelDetail(_Answer):
    """``GET /api/models/{name}``: every version, oldest first, and the aliases."""

    name: str
    versions: list[ModelVersion]
    aliases: dict[str, int]


# -- federations: standing analytics federations (``/api/federations``) ---------------------------
# Their requests, like the analytics request, are validated where they run:
# :class:`fedlearn.analytics.federation.FederationRequest` and ``BatchRequest``.


class FederationBatch(_Answer):
    """One dataset a member contributes; ``rows`` is None until the node has summarised it."""

    id: str
    node: str
    dataset: str
    rows: int | None
    added_at: Timestamp | None = None
    summarised_at: Timestamp | None = None


class FederationMember(_Answer):
    """A member's rows in the federation's summary; ``stale`` says why the last refresh kept its old summary."""

    node: str
    rows: int
    stale: str | None
    updated_at: Timestamp


class FittedModel(_Answer):
    """A model the federation keeps fitted, or the ``error`` that kept it from being fitted on ``rows`` rows."""

    model: str
    rows: int
    error: str | None
    fitted_at: Timestamp


class FederationSummary(_Answer):
    """A federation as ``GET /api/federations`` lists it: what it summarises, its models and schedule."""

    name: str
    columns: list[str]
    target: str | None
    task: Literal["regression", "classification"]
    histograms: list[dict[str, JsonValue]]
    models: list[str]
    options: dict[str, JsonValue]
    refresh_seconds: float | None
    created_at: Timestamp
    refreshed_at: Timestamp | None
    rows: int


class FederationDetail(FederationSummary):
    """``GET /api/federations/{name}``: the summary, its members, batches, fitted models and last refresh.

    ``report`` is what the last refresh from the nodes found: ``scheduled`` (or asked for) and
    ``stale``, each member it could not refresh with the reason; None before the first refresh.
    """

    timeout: float
    wait: float
    members: list[FederationMember]
    batches: list[FederationBatch]
    fitted: list[FittedModel]
    report: dict[str, JsonValue] | None


class FederationModel(_Answer):
    """``GET /api/federations/{name}/models/{model}``: a kept model's learned arrays, as the analytics answer has them.

    ``attributes`` are the arrays as nested lists (None where a value is not finite); ``fitted_at``
    is when they were fitted, ``refreshed_at`` when the summaries were last read from the nodes.
    """

    federation: str
    model: str
    columns: list[str]
    target: str | None
    task: Literal["regression", "classification"]
    options: dict[str, JsonValue]
    rows: int
    fitted_at: Timestamp
    refreshed_at: Timestamp | None
    attributes: dict[str, JsonValue]
