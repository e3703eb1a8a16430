"""The model server's HTTP app: MLflow's scoring endpoints in front of a :class:`ServedModel`.

- ``POST /invocations`` takes a body of MLflow's scoring protocol (JSON or CSV, see
  :mod:`fedlearn.registry.invocations`) and answers ``{"predictions": [...]}``, MLflow's shape, with
  the version that answered in the ``X-Model-Version`` header;
- ``GET /health`` (and MLflow's ``/ping``) answers 200 once a model is loaded, 503 before;
- ``GET /version`` answers the model version being served and fedlearn's version.

A refusal has MLflow's error body, ``{"error_code": ..., "message": ...}``, plus ``column`` when a
column is at fault: a body that does not fit the protocol or the model's schema is a 422 (with
``column`` when one is to blame), a body in a media type other than JSON or CSV a 415, a body or
row count over the server's limits a 413, a missing or wrong bearer token (when the server has
one) a 401. The body is bounded in bytes and arrival time by :mod:`fedlearn.web.guard` before a
byte of it is read, and in rows as soon as it is parsed.

Parsing, encoding and predicting run in a worker thread, so a large batch does not stall the
event loop for the other connections, such as a load balancer's health checks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from fedlearn.core.checks import POSITIVE, check_int, check_real
from fedlearn.core.errors import ConfigError, FedlearnError, LimitExceeded, SchemaError
from fedlearn.core.limits import DEFAULT_MAX_INVOCATION_BYTES, DEFAULT_MAX_INVOCATION_ROWS, DEFAULT_REQUEST_SECONDS
from fedlearn.registry.invocations import MEDIA_TYPES, media_type, parse_body
from fedlearn.registry.predictor import Predictor
from fedlearn.registry.serving import Prediction, ServedModel, predict
from fedlearn.web.guard import RequestGuard
from fedlearn.web.server import api_server, running_in_thread

VERSION_HEADER = "X-Model-Version"
"""The response header that names the model version (``NAME/VERSION``) that answered."""

OPEN_PATHS = frozenset({"/health", "/ping"})
"""Served without the bearer token, for a load balancer's health check."""

ERROR_CODES: Mapping[int, str] = {
    401: "UNAUTHENTICATED",
    404: "ENDPOINT_NOT_FOUND",
    405: "ENDPOINT_NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    413: "REQUEST_LIMIT_EXCEEDED",
    415: "BAD_REQUEST",
    422: "INVALID_PARAMETER_VALUE",
    503: "TEMPORARILY_UNAVAILABLE",
}
"""MLflow's ``error_code`` for each status the server refuses with; any other is ``INTERNAL_ERROR``."""

NOT_LOADED = "no model is loaded yet; the server is still loading its first version"


@contextmanager
def serving(
    model: Predictor, *, host: str = "127.0.0.1", port: int = 0, bearer_token: str | None = None
) -> Iterator[str]:
    """Serve ``model`` from a thread of this process, as ``fedlearn serve`` would; yield its base URL.

    For a notebook, a script or a test: the same endpoints, limits and error bodies, without a
    second process. The version never changes; for hot swaps run ``fedlearn serve``.
    """
    from fedlearn import __version__

    app = create_model_app(ServedModel(model), fedlearn_version=__version__, bearer_token=bearer_token)
    with running_in_thread(api_server(app, host=host, port=port), host=host, port=port) as bound:
        yield f"http://{host}:{bound}"


def error_body(status: int, message: str, column: str = "") -> dict[str, str]:
    """MLflow's error body, with the column at fault when there is one."""
    body = {"error_code": ERROR_CODES.get(status, "INTERNAL_ERROR"), "message": message}
    return {**body, "column": column} if column else body


def create_model_app(
    served: ServedModel,
    *,
    fedlearn_version: str,
    bearer_token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_INVOCATION_BYTES,
    max_rows: int = DEFAULT_MAX_INVOCATION_ROWS,
    body_timeout: float = DEFAULT_REQUEST_SECONDS,
) -> FastAPI:
    """The app serving ``served``; with ``bearer_token``, ``/invocations`` and ``/version`` need it."""
    if bearer_token is not None and len(bearer_token) < 16:
        raise ConfigError("the bearer token must be at least 16 characters; generate one with `fedlearn token`")
    row_limit = check_int("max_rows", max_rows, low=1)
    app = FastAPI(title="fedlearn model server", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        RequestGuard,
        admin_token=bearer_token,
        max_body_bytes=check_int("max_body_bytes", max_body_bytes, low=1),
        body_timeout=check_real("body_timeout", body_timeout, POSITIVE),
        open_paths=OPEN_PATHS,
        server="model server",
        limit_option="`fedlearn serve` with a larger --max-body-bytes",
        refusal=error_body,
    )

    @app.exception_handler(FedlearnError)
    async def ours(request: Request, exc: FedlearnError) -> JSONResponse:
        status = 422 if isinstance(exc, SchemaError) else 413 if isinstance(exc, LimitExceeded) else 500
        return JSONResponse(error_body(status, str(exc), getattr(exc, "column", "")), status_code=status)

    @app.exception_handler(Exception)  # anything else a model raises; Starlette re-raises it after, so uvicorn logs it
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        message = f"the model failed on this request ({type(exc).__name__}: {exc}); the server's log has the traceback"
        return JSONResponse(error_body(500, message), status_code=500)

    @app.exception_handler(HTTPException)
    async def refused(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(exc.status_code, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.get("/health")
    @app.get("/ping")
    def health() -> JSONResponse:
        model = served.current
        if model is None:
            return JSONResponse(error_body(503, NOT_LOADED), status_code=503)
        return JSONResponse({"status": "ok", "model_version": model.version})

    @app.get("/version")
    def version() -> JSONResponse:
        model = served.current
        return JSONResponse({"model_version": model.version if model else None, "fedlearn_version": fedlearn_version})

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        media = media_type(request.headers.get("content-type"))
        if media is None:
            got = request.headers.get("content-type", "none")
            raise HTTPException(415, f"Content-Type must be one of {list(MEDIA_TYPES)} in UTF-8; got {got!r}")
        model = served.current  # read once: this request is answered by this version, whatever swaps meanwhile
        if model is None:
            raise HTTPException(503, NOT_LOADED)
        body = await request.body()
        prediction = await anyio.to_thread.run_sync(_score, model, body, media, row_limit)
        headers = {VERSION_HEADER: prediction.version}
        return Response(_render(prediction), media_type="application/json", headers=headers)

    return app


def _score(model: Predictor, body: bytes, media: str, max_rows: int) -> Prediction:
    return predict(model, parse_body(body, media, model.schema, max_rows=max_rows))


def _render(prediction: Prediction) -> bytes:
    try:
        return json.dumps({"predictions": prediction.values}, allow_nan=False).encode()
    except ValueError:
        message = f"model {prediction.version} made a non-finite prediction, which JSON cannot carry"
        raise FedlearnError(message) from None
