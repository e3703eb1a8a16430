"""The model registry over HTTP: a real store behind the app, in process and on loopback, with hostile requests."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from fedlearn.core.errors import ConfigError, NotFoundError
from fedlearn.registry.package import ModelPackage
from fedlearn.registry.predictors import load_package
from fedlearn.runtime.coordinator import Coordinator
from fedlearn.runtime.store import Store
from fedlearn.simulation.inprocess import InProcessFleet
from fedlearn.web.api import create_app
from fedlearn.web.client import CoordinatorClient
from fedlearn.web.contract import ModelDetail, ModelSummary, ModelVersion, RegisterRequest
from tests.registry.conftest import blobs, completed_run
from tests.web.serving import client_over_loopback
from tests.web.test_api import ADMIN, AUTH, _no_node

LIMIT = 20_000


@pytest.fixture
def api(store: Store) -> TestClient:
    coordinator = Coordinator(store, InProcessFleet([], _no_node))
    return TestClient(create_app(coordinator, admin_token=ADMIN, max_request_bytes=LIMIT))


@pytest.fixture
def client(store: Store) -> Iterator[CoordinatorClient]:
    """The client over TCP to the app served on loopback, as ``fedlearn models`` talks to a coordinator."""
    with client_over_loopback(store) as opened:
        yield opened


def _register(api: TestClient, store: Store, name: str = "churn") -> ModelVersion:
    response = api.post("/api/models", json={"name": name, "run_id": completed_run(store)}, headers=AUTH)
    assert response.status_code == 201, response.text
    return ModelVersion.model_validate_json(response.content)


def test_registered_run_is_listed_shown_and_fetched_by_version(api: TestClient, store: Store) -> None:
    registered = _register(api, store)
    _register(api, store)

    [summary] = [ModelSummary.model_validate(m) for m in api.get("/api/models", headers=AUTH).json()]
    detail = ModelDetail.model_validate_json(api.get("/api/models/churn", headers=AUTH).content)
    first = ModelVersion.model_validate_json(api.get("/api/models/churn/versions/1", headers=AUTH).content)

    assert (registered.version, registered.kind, registered.task) == (1, "learner", "classification")
    assert (summary.name, summary.latest, summary.versions) == ("churn", 2, 2)
    assert [v.version for v in detail.versions] == [1, 2]
    assert first == registered
    assert first.lineage["run_id"] == first.run_id


def test_alias_is_set_moved_used_and_deleted(api: TestClient, store: Store) -> None:
    _register(api, store), _register(api, store)

    set_ = api.put("/api/models/churn/aliases/champion", json={"version": 1}, headers=AUTH)
    moved = api.put("/api/models/churn/aliases/champion", json={"version": 2}, headers=AUTH)
    package = api.get("/api/models/churn@champion/package", headers=AUTH)
    deleted = api.delete("/api/models/churn/aliases/champion", headers=AUTH)
    gone = api.get("/api/models/churn@champion/package", headers=AUTH)

    assert (set_.status_code, set_.json()["aliases"]) == (200, ["champion"])
    assert moved.json()["version"] == 2
    assert package.headers["X-Fedlearn-Model"] == "churn/2"
    assert ModelPackage.from_bytes(package.content).ref == "churn/2"
    assert (deleted.status_code, gone.status_code) == (204, 404)
    assert api.get("/api/models", headers=AUTH).json()[0]["aliases"] == {}


def test_package_download_is_the_registered_file_and_predicts(api: TestClient, store: Store) -> None:
    registered = _register(api, store)

    response = api.get("/api/models/churn@1/package", headers=AUTH)
    model = load_package(ModelPackage.from_bytes(response.content))

    assert response.headers["content-disposition"] == 'attachment; filename="churn-1.safetensors"'
    assert response.content == store.get_blob(registered.digest)
    assert model.predict(blobs(3).x).shape == (90,)


@pytest.mark.parametrize(
    "path",
    [
        "/api/models/nope",
        "/api/models/churn/versions/9",
        "/api/models/nope/versions/1",
        "/api/models/nope/package",
        "/api/models/churn@9/package",
        "/api/models/churn@ghost/package",
    ],
)
def test_unknown_names_versions_and_aliases_are_404s(api: TestClient, store: Store, path: str) -> None:
    _register(api, store)

    response = api.get(path, headers=AUTH)

    assert response.status_code == 404
    assert response.json()["detail"].startswith(("no model named", "model 'churn' has no"))


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/models/-churn", None),
        ("GET", "/api/models/%2E%2E/package", None),
        ("GET", "/api/models/..%5C..%5Cetc/package", None),
        ("GET", "/api/models/churn@/package", None),
        ("GET", "/api/models/churn/versions/0", None),
        ("GET", "/api/models/churn/versions/x", None),
        ("PUT", "/api/models/churn/aliases/latest", {"version": 1}),
        ("PUT", "/api/models/churn/aliases/7up", {"version": 1}),
        ("PUT", "/api/models/churn/aliases/champion", {"version": 0}),
        ("PUT", "/api/models/churn/aliases/champion", {"version": 1, "extra": True}),
        ("POST", "/api/models", {"name": "../../etc", "run_id": "x"}),
        ("POST", "/api/models", {"name": "churn"}),
        ("POST", "/api/models", {"name": "churn", "run_id": "x", "analytics": {}}),
        ("POST", "/api/models", {"name": "churn", "run_id": "x", "input_schema": [{"name": "a", "type": "blob"}]}),
    ],
)
def test_malformed_names_and_bodies_are_422s(
    api: TestClient, store: Store, method: str, path: str, body: object
) -> None:
    _register(api, store)

    response = api.request(method, path, json=body, headers=AUTH)

    assert response.status_code == 422, response.text
    assert "\n" not in response.json()["detail"]


def test_path_traversal_never_reaches_another_route_or_file(api: TestClient, store: Store) -> None:
    _register(api, store)

    response = api.get("/api/models/churn%2F..%2F..%2Fruns/package", headers=AUTH)

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"


def test_alias_pointing_at_a_missing_version_is_refused_and_nothing_changes(api: TestClient, store: Store) -> None:
    _register(api, store)

    response = api.put("/api/models/churn/aliases/champion", json={"version": 5}, headers=AUTH)

    assert (response.status_code, response.json()["detail"]) == (404, "model 'churn' has no version 5; "
                                                                 "`fedlearn models show churn` lists them")  # fmt: skip
    assert store.list_models("churn")[0].aliases == ()


def test_run_that_is_not_completed_is_refused(api: TestClient, store: Store) -> None:
    run_id = completed_run(store, status="running")

    response = api.post("/api/models", json={"name": "churn", "run_id": run_id}, headers=AUTH)

    assert response.status_code == 422
    assert "only a completed run can be registered" in response.json()["detail"]


def test_register_body_over_the_limit_is_refused_before_it_is_read(api: TestClient, store: Store) -> None:
    huge = {"name": "big", "analytics": {"model": "linear", "attributes": {"coef_": [1.0] * 10_000}}}

    response = api.post("/api/models", json=huge, headers=AUTH)

    assert response.status_code == 413
    assert store.list_models() == []


def test_registry_routes_need_the_admin_token(api: TestClient) -> None:
    assert api.get("/api/models").status_code == 401
    assert api.get("/api/models/churn/package", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_client_registers_aliases_and_downloads_over_tcp(client: CoordinatorClient, store: Store) -> None:
    run_id = completed_run(store)

    registered = client.register_model(RegisterRequest(name="churn", run_id=run_id, classes=["a", "b", "c"]))
    client.set_alias("churn", "champion", registered.version)
    data = client.model_package("churn@champion")
    detail = client.model_detail("churn")

    assert ModelPackage.from_bytes(data).classes == ("a", "b", "c")
    assert (detail.aliases, [m.name for m in client.models()]) == ({"champion": 1}, ["churn"])
    assert client.model_version("churn", 1).aliases == ["champion"]
    client.delete_alias("churn", "champion")
    with pytest.raises(NotFoundError, match="no alias 'champion'"):
        client.model_package("churn@champion")
    with pytest.raises(ConfigError, match="`model name` must be"):
        client.model_detail("a/b")
    assert np.isfinite(load_package(ModelPackage.from_bytes(data)).predict_proba(blobs(3).x)).all()
