"""The client side of standing analytics federations: manage them, and fetch a fitted model to use locally.

::

    from fedlearn.web.federation_client import fetch_model

    model = fetch_model("http://coordinator:8080", token, "visits", "ridge")
    model.predict(my_rows)   # a FederatedRidge, fitted on every member's rows, none of which left its node

:func:`fetch_model` rebuilds the analytics estimator the coordinator fitted (same class, same
options) and sets its learned arrays back, so it predicts, transforms or scores locally like one
fitted here. It lives in ``web`` rather than ``analytics`` because it speaks HTTP, which the
analytics layer may not import.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import TypeAdapter

from fedlearn.web.client import CoordinatorClient
from fedlearn.web.contract import FederationBatch, FederationDetail, FederationModel, FederationSummary

_DETAIL = TypeAdapter(FederationDetail)
_SUMMARIES = TypeAdapter(list[FederationSummary])
_BATCH = TypeAdapter(FederationBatch)
_MODEL = TypeAdapter(FederationModel)


class FederationClient(CoordinatorClient):
    """:class:`CoordinatorClient` with the ``/api/federations`` routes; answers are the contract's models."""

    def create_federation(self, request: dict[str, Any]) -> FederationDetail:
        """Create a federation from the JSON body of ``POST /api/federations`` (validated by the coordinator)."""
        return self._call(_DETAIL, "POST", "/api/federations", json=request)

    def federations(self) -> list[FederationSummary]:
        return self._call(_SUMMARIES, "GET", "/api/federations")

    def federation(self, name: str) -> FederationDetail:
        return self._call(_DETAIL, "GET", f"/api/federations/{name}")

    def delete_federation(self, name: str) -> None:
        self._request("DELETE", f"/api/federations/{name}")

    def add_batch(self, name: str, node: str, dataset: str, *, timeout: float | None = None) -> FederationBatch:
        """Ask ``node`` to summarise its ``dataset`` and add it to the federation as a new batch."""
        path = f"/api/federations/{name}/members/{node}/batches"
        return self._call(_BATCH, "POST", path, json={"dataset": dataset}, timeout=timeout)

    def remove_batch(self, name: str, node: str, batch_id: str) -> None:
        self._request("DELETE", f"/api/federations/{name}/members/{node}/batches/{batch_id}")

    def refresh(self, name: str, *, timeout: float | None = None) -> FederationDetail:
        """Summarise every member's batches again and refit; members that fail are reported stale."""
        return self._call(_DETAIL, "POST", f"/api/federations/{name}/refresh", timeout=timeout)

    def federation_model(self, name: str, model: str) -> FederationModel:
        return self._call(_MODEL, "GET", f"/api/federations/{name}/models/{model}")


def fetch_model(url: str, admin_token: str, name: str, model: str) -> Any:
    """The federation's current ``model`` as a fitted analytics estimator, to use locally."""
    client = FederationClient(url, admin_token=admin_token)
    try:
        answer = client.federation_model(name, model)
    finally:
        client.close()
    return estimator_of(answer)


def estimator_of(answer: FederationModel) -> Any:
    """The fitted estimator that ``answer``'s learned arrays and options describe."""
    from fedlearn.analytics.catalog import estimator_from_arrays  # the models load only when one is wanted

    options = answer.options
    arrays = {name: _array(value) for name, value in answer.attributes.items()}
    return estimator_from_arrays(
        answer.model,
        arrays,
        alpha=options.get("alpha", 1.0),
        intercept=options.get("fit_intercept", True),
        n_components=options.get("n_components"),
    )


def _array(value: Any) -> NDArray[Any]:
    """Nested lists from JSON as an array; None (a value that was not finite) comes back as NaN."""
    array = np.asarray(value)
    if array.dtype == object:
        array = np.array(_nan_for_none(value), dtype=np.float64)
    return array


def _nan_for_none(value: Any) -> Any:
    if value is None:
        return np.nan
    if isinstance(value, list):
        return [_nan_for_none(v) for v in value]
    return value
