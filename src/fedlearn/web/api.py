"""The coordinator's HTTP JSON API: submit and follow runs, see nodes, download models, run analytics.

Every route except ``/api/health`` needs ``Authorization: Bearer <admin token>``. The token is
checked, and each request body bounded in size and arrival time, by :mod:`fedlearn.web.guard`
before the app reads a byte of the body. Errors carry the same one-line messages as the CLI, in
``detail``: a bad request or run config is a 422 that names the field or key, an unknown run a
404, a node's privacy refusal a 403 with the node's reason, nodes busy with a training run a 409,
and a node that is not connected or does not answer a 503. Those statuses, and the models every
route takes and answers, are the contract in :mod:`fedlearn.web.contract`, which the client reads too.
A run's detail carries its differential privacy, ε spent and the ledger behind it, under ``privacy``.
Standing analytics federations live under ``/api/federations`` (:mod:`fedlearn.web.federation_api`).

The model registry lives under ``/api/models``: list, show a model or one version, register a
completed run or an analytics answer as a new version, point and remove aliases, and download a
version's package file by reference (``churn``, ``churn@3``, ``churn@champion``). Unknown names and
versions are 404s, malformed names 422s; see :mod:`fedlearn.registry.catalog`.

The OpenAPI schema is served at ``/openapi.json``, behind the token like every other route. The
Swagger and ReDoc pages are not served: they load their scripts from a CDN, so they would show an
operator on an offline network a blank page, and load third-party code next to the admin token.
"""

from __future__ import annotations

import math
from functools import lru_cache

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from fedlearn.analytics.federation import Federations
from fedlearn.analytics.federation_schedule import DEFAULT_POLL_SECONDS, FederationScheduler
from fedlearn.analytics.remote import AnalyticsRequest, check_connected, run_request
from fedlearn.config import DifferentialPrivacySection
from fedlearn.core.checks import POSITIVE, check_int, check_real
from fedlearn.core.codec import encode
from fedlearn.core.errors import ConfigError, FedlearnError, NotFoundError
from fedlearn.core.limits import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_REQUEST_SECONDS
from fedlearn.data.schema import InputSchema
from fedlearn.engine.history import RoundRecord
from fedlearn.privacy.ledger import PrivacyLedger
from fedlearn.registry.catalog import package_bytes, register_analytics, register_run, resolve
from fedlearn.registry.fleet_contract import EvaluateRequest, EvaluationAnswer, ScoreRequest, ScoringAnswer
from fedlearn.registry.package import ModelPackage
from fedlearn.registry.remote_scoring import run_evaluation, run_scoring, target_nodes
from fedlearn.runtime.coordinator import Coordinator
from fedlearn.runtime.store import ModelRecord, NodeRecord, RunRecord
from fedlearn.web.contract import (
    AliasRequest,
    AnalyticsResult,
    Health,
    ModelDetail,
    ModelSummary,
    ModelVersion,
    NodeSummary,
    Refusal,
    RegisterRequest,
    RunDetail,
    RunPrivacy,
    RunRequest,
    RunSummary,
    status_of,
)
from fedlearn.web.federation_api import federation_routes, scheduling
from fedlearn.web.guard import RequestGuard


def run_summary(run: RunRecord, epsilon: float | None = None) -> RunSummary:
    return RunSummary.model_validate(run, from_attributes=True).model_copy(update={"epsilon": epsilon})


def run_detail(run: RunRecord, history: list[RoundRecord], privacy: RunPrivacy | None = None) -> RunDetail:
    summary = run_summary(run, history[-1].epsilon if history else None).model_dump()
    return RunDetail(**summary, config=run.config_toml, history=history, privacy=privacy)


def run_privacy(
    ledger: PrivacyLedger | None, history: list[RoundRecord], settings: DifferentialPrivacySection | None
) -> RunPrivacy | None:
    """The run's privacy as the API shows it: None for a run without DP; ε = 0 for one that has run no round.

    ε is the latest round's, which the engine computed from this very ledger when it checkpointed
    it (the store reads both from one snapshot), so a poll does not recompose the ledger: with the
    PLD accountant that takes seconds. Only a history without ε falls back to composing it.
    """
    budget = None if settings is None or settings.epsilon is None or math.isinf(settings.epsilon) else settings.epsilon
    if ledger is None:
        if settings is None:
            return None
        return RunPrivacy(epsilon=0.0, delta=settings.delta, budget=budget, accountant=settings.accountant, charges=[])
    latest = history[-1].epsilon if history else None
    return RunPrivacy(
        epsilon=latest if latest is not None else _epsilon(ledger),
        delta=ledger.delta,
        budget=budget,
        accountant=ledger.method,
        charges=[charge.to_json() for charge in ledger.charges],
    )


@lru_cache(maxsize=32)
def _epsilon(ledger: PrivacyLedger) -> float:
    return ledger.epsilon()


def node_summary(node: NodeRecord, connected: set[str]) -> NodeSummary:
    return NodeSummary(
        name=node.name,
        status="revoked" if node.revoked else ("online" if node.name in connected else "offline"),
        created_at=node.created_at,
        last_seen=node.last_seen,
    )


def model_version(record: ModelRecord) -> ModelVersion:
    return ModelVersion.model_validate(record, from_attributes=True)


def model_summaries(records: list[ModelRecord]) -> list[ModelSummary]:
    """One summary per name from all versions, which the store lists by name then version."""
    by_name: dict[str, list[ModelRecord]] = {}
    for record in records:
        by_name.setdefault(record.name, []).append(record)
    return [
        ModelSummary(
            name=name,
            latest=versions[-1].version,
            versions=len(versions),
            kind=versions[-1].kind,  # type: ignore[arg-type]
            task=versions[-1].task,  # type: ignore[arg-type]
            updated_at=versions[-1].created_at,
            aliases=_aliases(versions),
        )
        for name, versions in by_name.items()
    ]


def model_detail(name: str, records: list[ModelRecord]) -> ModelDetail:
    return ModelDetail(name=name, versions=[model_version(r) for r in records], aliases=_aliases(records))


def _aliases(records: list[ModelRecord]) -> dict[str, int]:
    return {alias: record.version for record in records for alias in record.aliases}


def _refusal(status: int, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, content=Refusal(detail=detail).model_dump())


def validation_message(exc: RequestValidationError) -> str:
    """The first problem with a request body in one line, naming the field, like a config error."""
    errors = exc.errors()
    first = errors[0]
    field = ".".join(str(p) for p in first["loc"] if p != "body")
    text = first["msg"].removeprefix("Value error, ")
    if not field:  # a check across fields, whose message names them itself
        message = text
    elif first["type"] == "extra_forbidden":
        message = f"unknown field `{field}`"
    elif first["type"] == "missing":
        message = f"`{field}` is required"
    else:
        message = f"`{field}`: {text}; got {first['input']!r}"
    return message + (f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else "")


def create_app(
    coordinator: Coordinator,
    *,
    admin_token: str,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    body_timeout: float = DEFAULT_REQUEST_SECONDS,
    federation_poll: float = DEFAULT_POLL_SECONDS,
) -> FastAPI:
    """The API bound to one coordinator; ``admin_token`` guards every route but health.

    A request body may hold at most ``max_request_bytes`` and must arrive within ``body_timeout``
    seconds of its headers; see :mod:`fedlearn.web.guard`. While the app is served, due federation
    refreshes run every ``federation_poll`` seconds (:mod:`fedlearn.analytics.federation_schedule`).
    """
    if len(admin_token) < 16:
        raise ConfigError("the admin token must be at least 16 characters; generate one with `fedlearn token`")
    store = coordinator.store
    federations = Federations(coordinator)
    lifespan = scheduling(FederationScheduler(federations, poll=federation_poll))
    app = FastAPI(title="fedlearn coordinator", version="1", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.add_middleware(
        RequestGuard,
        admin_token=admin_token,
        max_body_bytes=check_int("max_request_bytes", max_request_bytes, low=1),
        body_timeout=check_real("body_timeout", body_timeout, POSITIVE),
    )

    @app.exception_handler(FedlearnError)  # subclasses too: handlers are looked up along the error's MRO
    async def ours(request: Request, exc: FedlearnError) -> JSONResponse:
        return _refusal(status_of(exc), str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _refusal(422, validation_message(exc))

    @app.get("/api/health")
    def health() -> Health:
        return Health(status="ok", nodes_connected=len(coordinator.fleet.available()))

    @app.get("/api/nodes")
    def nodes() -> list[NodeSummary]:
        connected = set(coordinator.fleet.available())
        return [node_summary(n, connected) for n in store.list_nodes()]

    @app.get("/api/runs")
    def runs() -> list[RunSummary]:
        spent = store.epsilons()
        return [run_summary(r, spent.get(r.id)) for r in store.list_runs()]

    @app.post("/api/runs", status_code=201)
    def submit(request: RunRequest) -> RunSummary:
        return run_summary(coordinator.submit(request.config))

    @app.get("/api/runs/{run_id}")
    def show(run_id: str) -> RunDetail:
        run = store.get_run(run_id)
        history, ledger = store.progress(run_id)
        return run_detail(run, history, run_privacy(ledger, history, coordinator.privacy_config(run)))

    @app.post("/api/runs/{run_id}/stop")
    def stop(run_id: str) -> RunSummary:
        return run_summary(coordinator.stop(run_id), store.epsilons(run_id).get(run_id))

    @app.post("/api/runs/{run_id}/resume")
    def resume(run_id: str) -> RunSummary:
        return run_summary(coordinator.resume(run_id), store.epsilons(run_id).get(run_id))

    @app.get("/api/runs/{run_id}/model")
    def model(run_id: str) -> Response:
        run = store.get_run(run_id)
        params = coordinator.final_params(run_id)
        if params is None:
            raise NotFoundError(f"run {run_id} has no completed round yet, so it has no model")
        metadata = {"run": run.name, "run_id": run.id, "round": str(run.rounds_done), "seed": str(run.seed)}
        return Response(content=encode(params, metadata=metadata), media_type="application/octet-stream")

    @app.get("/api/models")
    def models() -> list[ModelSummary]:
        return model_summaries(store.list_models())

    @app.post("/api/models", status_code=201)
    def register(request: RegisterRequest) -> ModelVersion:
        schema = None if request.input_schema is None else InputSchema.from_json(request.input_schema)
        if request.run_id is not None:
            classes = None if request.classes is None else tuple(request.classes)
            return model_version(register_run(store, request.run_id, name=request.name, schema=schema, classes=classes))
        assert request.analytics is not None  # the request's validator allows exactly one source
        record = register_analytics(store, request.analytics, name=request.name, options=request.options, schema=schema)
        return model_version(record)

    @app.get("/api/models/{name}")
    def model_versions(name: str) -> ModelDetail:
        return model_detail(name, store.list_models(name))

    @app.get("/api/models/{name}/versions/{version}")
    def model_version_of(name: str, version: int) -> ModelVersion:
        return model_version(store.get_model(name, version))

    @app.put("/api/models/{name}/aliases/{alias}")
    def set_alias(name: str, alias: str, request: AliasRequest) -> ModelVersion:
        return model_version(store.set_model_alias(name, alias, request.version))

    @app.delete("/api/models/{name}/aliases/{alias}", status_code=204)
    def delete_alias(name: str, alias: str) -> Response:
        store.delete_model_alias(name, alias)
        return Response(status_code=204)

    @app.get("/api/models/{ref}/package")
    def package(ref: str) -> Response:
        """The version's package file: safetensors with its JSON description, as registered."""
        record = resolve(store, ref)
        return Response(
            content=package_bytes(store, record),
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": f'attachment; filename="{record.name}-{record.version}.safetensors"',
                "X-Fedlearn-Model": f"{record.name}/{record.version}",
            },
        )

    @app.post("/api/models/{ref}/score")
    def score(ref: str, request: ScoreRequest) -> ScoringAnswer:
        """Each node scores its own dataset into its own table; counts come back, never rows."""
        request.check()
        package = ModelPackage.from_bytes(package_bytes(store, resolve(store, ref)))
        nodes = target_nodes(request.nodes, coordinator.fleet.available())
        with coordinator.fleet_access(wait=request.wait, purpose="a scoring request") as fleet:
            return ScoringAnswer.model_validate(run_scoring(package, request, fleet, nodes))

    @app.post("/api/models/{ref}/evaluate")
    def evaluate(ref: str, request: EvaluateRequest) -> EvaluationAnswer:
        """Per-node and pooled metrics of a version on the nodes' held-out rows, from their sums."""
        package = ModelPackage.from_bytes(package_bytes(store, resolve(store, ref)))
        nodes = target_nodes(request.nodes, coordinator.fleet.available())
        with coordinator.fleet_access(wait=request.wait, purpose="an evaluation request") as fleet:
            return EvaluationAnswer.model_validate(run_evaluation(package, request, fleet, nodes))

    @app.post("/api/analytics")
    def analytics(request: AnalyticsRequest) -> AnalyticsResult:
        """Exact federated analytics over the members' datasets, between training rounds."""
        check_connected(request.members, coordinator.fleet.available())
        with coordinator.fleet_access(wait=request.wait, purpose="an analytics request") as fleet:
            keys = coordinator.store.identity_keys() if request.secure else None
            return AnalyticsResult.model_validate(run_request(request, fleet, identity_keys=keys))

    app.include_router(federation_routes(federations))  # standing analytics federations
    return app
