"""The coordinator's HTTP JSON API: submit and follow runs, see nodes, download models.

Every route except ``/api/health`` needs ``Authorization: Bearer <admin token>``. The token is
compared in constant time. Errors carry the same one-line messages as the CLI: a bad run config
is a 422 that names the key, and an unknown run is a 404.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from fedlearn.core.codec import encode
from fedlearn.core.errors import ConfigError, NotFoundError
from fedlearn.runtime.coordinator import Coordinator
from fedlearn.runtime.store import NodeRecord, RunRecord

_bearer = HTTPBearer(auto_error=False)


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

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(ConfigError)
    async def bad_config(request: Request, exc: ConfigError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

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

    return app
