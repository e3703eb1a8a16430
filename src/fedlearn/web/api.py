"""The coordinator's HTTP JSON API: submit and follow runs, see nodes, download models, run analytics.

Every route except ``/api/health`` needs ``Authorization: Bearer <admin token>``. The token is
compared in constant time. Errors carry the same one-line messages as the CLI, in ``detail``: a
bad request or run config is a 422 that names the field or key, an unknown run a 404, a node's
privacy refusal a 403 with the node's reason, nodes busy with a training run a 409, and a node
that is not connected or does not answer a 503.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from fedlearn.analytics.remote import AnalyticsRequest, check_connected, run_request
from fedlearn.core.codec import encode
from fedlearn.core.errors import ConfigError, FedlearnError, FleetBusy, NotFoundError, PrivacyError, QuorumError
from fedlearn.runtime.coordinator import Coordinator
from fedlearn.runtime.store import NodeRecord, RunRecord

_bearer = HTTPBearer(auto_error=False)
# Our errors as HTTP statuses; anything else of ours is a 500 that still says what went wrong.
_STATUS: dict[type[FedlearnError], int] = {
    ConfigError: 422,
    PrivacyError: 403,
    NotFoundError: 404,
    FleetBusy: 409,
    QuorumError: 503,
    FedlearnError: 500,
}


class RunRequest(BaseModel):
    config: str


def run_json(run: RunRecord) -> dict[str, Any]:
    return {
        "id": run.id,
        "name": run.name,
        "status": run.status,
        "message": run.message,
        "seed": run.seed,
        "rounds_total": run.rounds_total,
        "rounds_done": run.rounds_done,
        "stop_requested": run.stop_requested,
        "created_at": run.created_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
    }


def node_json(node: NodeRecord, connected: set[str]) -> dict[str, Any]:
    return {
        "name": node.name,
        "status": "revoked" if node.revoked else ("online" if node.name in connected else "offline"),
        "created_at": node.created_at.isoformat(),
        "last_seen": node.last_seen.isoformat() if node.last_seen else None,
    }


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


def create_app(coordinator: Coordinator, *, admin_token: str) -> FastAPI:
    """The API bound to one coordinator; ``admin_token`` guards every route but health."""
    if len(admin_token) < 16:
        raise ConfigError("the admin token must be at least 16 characters; generate one with `fedlearn token`")
    store = coordinator.store
    app = FastAPI(title="fedlearn coordinator", version="1")

    def require_admin(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), admin_token.encode()):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong admin token: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    admin = [Depends(require_admin)]

    async def ours(request: Request, exc: Exception) -> JSONResponse:
        status = next(code for kind, code in _STATUS.items() if isinstance(exc, kind))
        return JSONResponse(status_code=status, content={"detail": str(exc)})

    for kind in _STATUS:
        app.add_exception_handler(kind, ours)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": validation_message(exc)})

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "nodes_connected": len(coordinator.fleet.available())}

    @app.get("/api/nodes", dependencies=admin)
    def nodes() -> list[dict[str, Any]]:
        connected = set(coordinator.fleet.available())
        return [node_json(n, connected) for n in store.list_nodes()]

    @app.get("/api/runs", dependencies=admin)
    def runs() -> list[dict[str, Any]]:
        return [run_json(r) for r in store.list_runs()]

    @app.post("/api/runs", dependencies=admin, status_code=201)
    def submit(request: RunRequest) -> dict[str, Any]:
        return run_json(coordinator.submit(request.config))

    @app.get("/api/runs/{run_id}", dependencies=admin)
    def show(run_id: str) -> dict[str, Any]:
        run = store.get_run(run_id)
        history = [r.to_json() for r in store.round_history(run_id)]
        return {**run_json(run), "config": run.config_toml, "history": history}

    @app.post("/api/runs/{run_id}/stop", dependencies=admin)
    def stop(run_id: str) -> dict[str, Any]:
        return run_json(coordinator.stop(run_id))

    @app.get("/api/runs/{run_id}/model", dependencies=admin)
    def model(run_id: str) -> Response:
        run = store.get_run(run_id)
        params = coordinator.final_params(run_id)
        if params is None:
            raise NotFoundError(f"run {run_id} has no completed round yet, so it has no model")
        metadata = {"run": run.name, "run_id": run.id, "round": str(run.rounds_done), "seed": str(run.seed)}
        return Response(content=encode(params, metadata=metadata), media_type="application/octet-stream")

    @app.post("/api/analytics", dependencies=admin)
    def analytics(request: AnalyticsRequest) -> dict[str, Any]:
        """Exact federated analytics over the members' datasets, between training rounds."""
        check_connected(request.members, coordinator.fleet.available())
        with coordinator.fleet_access(wait=request.wait, purpose="an analytics request") as fleet:
            return run_request(request, fleet)

    return app
