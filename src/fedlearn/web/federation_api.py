"""The HTTP routes of standing analytics federations, and the lifespan that runs their scheduled refreshes.

Mounted on the API by :func:`fedlearn.web.api.create_app`, behind the same admin token, body
limits and refusal statuses as every other route: an unknown federation, node, batch or model is a
404, a bad request a 422 naming the field, a node that is not connected a 503, nodes busy with a
training run a 409 and a node's privacy refusal a 403. See :mod:`fedlearn.analytics.federation`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from fedlearn.analytics.federation import BatchRequest, FederationRequest, Federations
from fedlearn.analytics.federation_schedule import FederationScheduler
from fedlearn.web.contract import FederationBatch, FederationDetail, FederationModel, FederationSummary


def federation_routes(federations: Federations) -> APIRouter:
    """The ``/api/federations`` routes over ``federations``."""
    router = APIRouter(prefix="/api/federations")

    @router.get("")
    def listing() -> list[FederationSummary]:
        return [FederationSummary.model_validate(f) for f in federations.list_all()]

    @router.post("", status_code=201)
    def create(request: FederationRequest) -> FederationDetail:
        return FederationDetail.model_validate(federations.create(request))

    @router.get("/{name}")
    def show(name: str) -> FederationDetail:
        return FederationDetail.model_validate(federations.show(name))

    @router.delete("/{name}", status_code=204)
    def delete(name: str) -> Response:
        federations.delete(name)
        return Response(status_code=204)

    @router.post("/{name}/members/{node}/batches", status_code=201)
    def add(name: str, node: str, request: BatchRequest) -> FederationBatch:
        """The node summarises ``request.dataset``; its summary becomes a new batch of the federation."""
        return FederationBatch.model_validate(federations.add_batch(name, node, request))

    @router.delete("/{name}/members/{node}/batches/{batch_id}", status_code=204)
    def remove(name: str, node: str, batch_id: str) -> Response:
        federations.remove_batch(name, node, batch_id)
        return Response(status_code=204)

    @router.post("/{name}/refresh")
    def refresh(name: str) -> FederationDetail:
        return FederationDetail.model_validate(federations.refresh(name))

    @router.get("/{name}/models/{model}")
    def model(name: str, model: str) -> FederationModel:
        return FederationModel.model_validate(federations.model(name, model))

    return router


def scheduling(scheduler: FederationScheduler) -> Callable[[Any], Any]:
    """A FastAPI lifespan that runs ``scheduler`` while the API is served."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        scheduler.start()
        try:
            yield
        finally:
            await run_in_threadpool(scheduler.close)

    return lifespan
