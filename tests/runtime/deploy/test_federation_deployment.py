"""Standing analytics federations on a deployed coordinator: real node processes on loopback.

Two honest nodes hold parts of the built-in diabetes data (``node-a`` two parts, ``node-b`` one),
a third lies about its schema, and a fourth is registered but never started. The tests add and
remove batches over the HTTP API, refresh on demand and on a schedule, fetch the models, and check
them against scikit-learn on the pooled rows, read from the nodes' own NODE.toml files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, Ridge
from typer.testing import CliRunner

from fedlearn.cli.root import app
from fedlearn.runtime.node_config import load_node_config
from fedlearn.web.federation_client import FederationClient, fetch_model
from tests.analytics.conftest import assert_close
from tests.runtime.deploy.conftest import ADMIN, ROOT, Deployment

pytestmark = pytest.mark.slow
runner = CliRunner()
DIABETES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
AUTH = {"Authorization": f"Bearer {ADMIN}"}
LIMIT = 65536
PARTS = {"node-a": ("part0", "part2"), "node-b": ("part1",)}
LIAR, OFFLINE = "node-liar", "node-off"


def _datasets(*indices: int) -> str:
    return "".join(
        f'\n[datasets.part{i}]\nsource = "builtin"\nname = "diabetes"\nnodes = 3\nindex = {i}\nseed = 7\n'
        for i in indices
    )


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("federation")
    deployment = Deployment(tmp=tmp, store_url=f"sqlite:///{tmp / 'coordinator.db'}")
    try:
        deployment.register(*PARTS, LIAR, OFFLINE)
        deployment.coordinator_args = ["--max-request-bytes", str(LIMIT)]
        deployment.start_coordinator()
        deployment.start_node("node-a", _datasets(0, 2))
        deployment.start_node("node-b", _datasets(1))
        deployment.nodes[LIAR] = subprocess.Popen(
            [sys.executable, "-m", "tests.runtime.deploy.hostile_analytics_node", "--coordinator",
             f"127.0.0.1:{deployment.grpc_port}", "--name", LIAR],
            cwd=ROOT, env={**os.environ, "FEDLEARN_NODE_TOKEN": deployment.tokens[LIAR]},
        )  # fmt: skip
        deployment.wait_for_nodes(3)
        yield deployment
    finally:
        deployment.close()


def _rows(deployment: Deployment, *parts: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``(node, dataset)`` parts, read from the nodes' own NODE.toml files as they read them."""
    data = [load_node_config(deployment.tmp / f"{node}.toml").load_datasets()[name] for node, name in parts]
    return np.concatenate([d.x for d in data]).astype(np.float64), np.concatenate([d.y for d in data])


def _client(deployment: Deployment) -> FederationClient:
    return FederationClient(deployment.api, admin_token=ADMIN, timeout=120)


def _create(deployment: Deployment, name: str, members: dict[str, str], **extra: Any) -> None:
    body = {"name": name, "columns": DIABETES, "target": "y", "models": ["linear", "ridge"],
            "options": {"alpha": 0.5}, "members": members, "timeout": 10, **extra}  # fmt: skip
    with _client(deployment) as client:
        client.create_federation(body)


def _coef(deployment: Deployment, name: str, model: str = "linear") -> np.ndarray:
    with _client(deployment) as client:
        return np.asarray(client.federation_model(name, model).attributes["coef_"])


def test_batches_added_and_removed_over_http_give_exactly_the_models_of_the_pooled_rows(deployed: Deployment) -> None:
    _create(deployed, "lifecycle", {"node-a": "part0", "node-b": "part1"})
    with _client(deployed) as client:
        refreshed = client.refresh("lifecycle")
        x, y = _rows(deployed, ("node-a", "part0"), ("node-b", "part1"))
        assert refreshed.rows == len(y) and refreshed.report == {"scheduled": False, "stale": {}}
        assert_close(_coef(deployed, "lifecycle"), LinearRegression().fit(x, y).coef_)

        batch = client.add_batch("lifecycle", "node-a", "part2")
        x_all, y_all = _rows(deployed, ("node-a", "part0"), ("node-b", "part1"), ("node-a", "part2"))
        assert batch.rows == len(y_all) - len(y)
        ridge = fetch_model(deployed.api, ADMIN, "lifecycle", "ridge")
        reference = Ridge(alpha=0.5).fit(x_all, y_all)
        assert_close(ridge.coef_, reference.coef_)
        assert_close(ridge.predict(x_all[:20]), reference.predict(x_all[:20]))

        client.remove_batch("lifecycle", "node-a", batch.id)
        after = client.federation("lifecycle")

    assert after.rows == len(y) and [b.dataset for b in after.batches] == ["part0", "part1"]
    assert_close(_coef(deployed, "lifecycle"), LinearRegression().fit(x, y).coef_)


def test_a_member_that_lies_about_its_schema_is_refused_and_changes_nothing(deployed: Deployment) -> None:
    _create(deployed, "liar", {"node-b": "part1"})
    with _client(deployed) as client:
        client.refresh("liar")
        coef = _coef(deployed, "liar")
        response = httpx.post(f"{deployed.api}/api/federations/liar/members/{LIAR}/batches",
                              json={"dataset": "part1"}, headers=AUTH, timeout=60)  # fmt: skip
        after = client.federation("liar")

    assert response.status_code == 503
    assert LIAR in response.json()["detail"] and "moments must cover 11 columns; got 12" in response.json()["detail"]
    assert [b.node for b in after.batches] == ["node-b"]
    assert_close(_coef(deployed, "liar"), coef, rtol=0)


def test_refresh_keeps_a_lying_or_absent_members_summary_and_reports_it_stale(deployed: Deployment) -> None:
    _create(deployed, "stale", {"node-b": "part1", LIAR: "part1", OFFLINE: "part1"})

    with _client(deployed) as client:
        refreshed = client.refresh("stale")

    x, y = _rows(deployed, ("node-b", "part1"))
    stale = (refreshed.report or {})["stale"]
    assert set(stale) == {LIAR, OFFLINE}  # type: ignore[arg-type]
    assert "moments must cover 11 columns" in stale[LIAR] and "not connected" in stale[OFFLINE]  # type: ignore[index]
    assert refreshed.rows == len(y)
    assert_close(_coef(deployed, "stale"), LinearRegression().fit(x, y).coef_)


def test_a_scheduled_federation_refreshes_itself_without_waiting_for_an_absent_member(deployed: Deployment) -> None:
    _create(deployed, "scheduled", {"node-b": "part1", OFFLINE: "part1"}, refresh_seconds=1)

    def refreshed_twice() -> bool:
        with _client(deployed) as client:
            detail = client.federation("scheduled")
        return detail.refreshed_at is not None and detail.refreshed_at > detail.created_at and detail.rows > 0

    deployed.wait_until(refreshed_twice, "a scheduled refresh", timeout=20)
    with _client(deployed) as client:
        detail = client.federation("scheduled")
    assert detail.report is not None and detail.report["scheduled"] is True
    assert list(detail.report["stale"]) == [OFFLINE]  # type: ignore[call-overload]
    assert {m.node: m.stale is not None for m in detail.members} == {"node-b": False, OFFLINE: True}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/federations/nowhere", None),
        ("POST", "/api/federations/nowhere/refresh", None),
        ("GET", "/api/federations/nowhere/models/linear", None),
        ("DELETE", "/api/federations/nowhere", None),
        ("POST", "/api/federations/known/members/node-z/batches", {"dataset": "part1"}),
        ("DELETE", "/api/federations/known/members/node-b/batches/0123456789abcdef0123456789abcdef", None),
        ("GET", "/api/federations/known/models/pca", None),
    ],
)
def test_unknown_federations_nodes_batches_and_models_are_404(
    deployed: Deployment, method: str, path: str, body: dict[str, str] | None
) -> None:
    with _client(deployed) as client:
        if "known" not in {f.name for f in client.federations()}:
            _create(deployed, "known", {"node-b": "part1"})

    response = httpx.request(method, f"{deployed.api}{path}", json=body, headers=AUTH, timeout=30)

    assert response.status_code == 404, response.text
    assert response.json()["detail"]


def test_every_federation_route_needs_the_admin_token(deployed: Deployment) -> None:
    routes = [
        ("GET", "/api/federations"),
        ("POST", "/api/federations/known/refresh"),
        ("POST", "/api/federations/known/members/node-b/batches"),
        ("GET", "/api/federations/known/models/linear"),
    ]

    answers = [httpx.request(m, f"{deployed.api}{path}", json={"dataset": "part1"}, timeout=30) for m, path in routes]

    assert [a.status_code for a in answers] == [401] * len(routes)


def test_a_huge_request_is_refused_before_it_is_read(deployed: Deployment) -> None:
    columns = [f"c{i}" for i in range(LIMIT // 4)]
    body = {"name": "huge", "columns": columns, "models": ["covariance"], "members": {"node-b": "part1"}}

    response = httpx.post(f"{deployed.api}/api/federations", json=body, headers=AUTH, timeout=30)

    assert response.status_code == 413
    with _client(deployed) as client:
        assert "huge" not in {f.name for f in client.federations()}


def test_logistic_regression_and_bad_definitions_are_refused_with_the_field_named(deployed: Deployment) -> None:
    body = {"name": "bad", "columns": DIABETES, "target": "y", "models": ["logistic"], "members": {"node-b": "part1"}}

    response = httpx.post(f"{deployed.api}/api/federations", json=body, headers=AUTH, timeout=30)
    unnamed = httpx.post(f"{deployed.api}/api/federations", json={**body, "name": "a/b", "models": ["linear"]},
                         headers=AUTH, timeout=30)  # fmt: skip

    assert response.status_code == 422 and "models" in response.json()["detail"]
    assert unnamed.status_code == 422 and "federation name" in unnamed.json()["detail"]


def test_the_cli_creates_adds_refreshes_and_fetches(deployed: Deployment) -> None:
    def cli(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["analytics", "federation", *args, "--coordinator", deployed.api],
                               env={"FEDLEARN_ADMIN_TOKEN": ADMIN, "COLUMNS": "200"})  # fmt: skip
        return result.exit_code, result.output

    created = cli("create", "cli", "--columns", ",".join(DIABETES), "--target", "y", "--model", "linear",
                  "--member", "node-b=part1")  # fmt: skip
    added = cli("add", "cli", "node-a", "part0")
    refreshed = cli("refresh", "cli")
    fetched = cli("fetch", "cli", "linear", "--out", str(deployed.tmp / "linear.safetensors"))
    missing = cli("fetch", "nowhere", "linear")

    assert created[0] == 0, created[1]
    assert added[0] == 0 and "added batch" in added[1], added[1]
    assert refreshed[0] == 0 and "refreshed cli" in refreshed[1], refreshed[1]
    assert fetched[0] == 0 and "linear regression of y" in fetched[1], fetched[1]
    assert (deployed.tmp / "linear.safetensors").exists()
    assert missing[0] == 6 and "no federation named 'nowhere'" in missing[1]


# Last in this module: it leaves the nodes reconnecting to the restarted coordinator.
def test_a_federation_survives_a_coordinator_killed_and_restarted(deployed: Deployment) -> None:
    _create(deployed, "durable", {"node-a": "part0", "node-b": "part1"})
    with _client(deployed) as client:
        client.refresh("durable")
        client.add_batch("durable", "node-a", "part2")
        before = client.federation("durable")
        model_before = client.federation_model("durable", "ridge")

    deployed.kill(deployed.coordinator)
    deployed.start_coordinator()
    with _client(deployed) as client:
        after = client.federation("durable")
        model_after = client.federation_model("durable", "ridge")

    assert after == before
    assert model_after == model_before
