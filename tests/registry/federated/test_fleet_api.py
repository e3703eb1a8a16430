"""Federated scoring and evaluation through the coordinator's HTTP API, its client and the CLI, over
in-process nodes with real SQLite databases: pooled figures equal the pooled rows', hostile nodes are cut out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.metrics import confusion_matrix, mean_squared_error, roc_auc_score
from typer.testing import CliRunner

from fedlearn.cli import app as cli_app
from fedlearn.client.node_app import NodeApp
from fedlearn.core.messages import EVALUATE_MODEL, SCORE, Reply, Task
from fedlearn.core.params import ParamSet
from fedlearn.registry.catalog import register
from fedlearn.registry.fleet_contract import EvaluationAnswer, ScoringAnswer
from fedlearn.registry.package import ModelPackage
from fedlearn.registry.predictors import load_package
from fedlearn.runtime.coordinator import Coordinator
from fedlearn.runtime.store import Store, open_store
from fedlearn.simulation.inprocess import InProcessFleet
from fedlearn.web.api import create_app
from fedlearn.web.client import CoordinatorClient
from fedlearn.web.server import api_server
from tests.registry.federated.models import linear_package, rows, softmax_package
from tests.registry.federated.node import dataset_toml, node, sqlite_table, table_rows
from tests.web.serving import served_on_loopback
from tests.web.test_api import ADMIN, AUTH

NODES = {"node-a": 40, "node-b": 70, "node-c": 25}
BINS = 200


class Fleet:
    """Three nodes, each with its own SQLite database of rows; ``liar`` answers evaluations with made-up sums."""

    def __init__(self, tmp: Path, *, task: str = "classification") -> None:
        self.tmp = tmp
        self.data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.apps: dict[str, NodeApp] = {}
        for seed, (name, count) in enumerate(NODES.items()):
            folder = tmp / name
            folder.mkdir()
            x, y = rows(count, seed=seed + 10)
            if task == "regression":
                y = (x.sum(axis=1) * 2).round(3)
            self.data[name] = (x, y)
            url = (
                sqlite_table(folder / "node.db", x, y, first_id=1000 * seed)
                if task == "classification"
                else (_regression_table(folder / "node.db", x, y))
            )
            toml = "[scoring]\nallow = true\n" + dataset_toml("customers", url, "SELECT * FROM customers", task=task)
            self.apps[name] = node(folder, toml, name=name)
        self.apps["liar"] = NodeApp(node_id="liar", handlers={EVALUATE_MODEL: _lying_sums})

    def factory(self, name: str) -> NodeApp:
        return self.apps[name]


def _regression_table(path: Path, x: np.ndarray, y: np.ndarray) -> str:
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, f0 REAL, f1 REAL, f2 REAL, label REAL)")
        values = [(i, *map(float, r), float(t)) for i, (r, t) in enumerate(zip(x, y, strict=True))]
        conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?)", values)
    return f"sqlite:///{path}"


def _lying_sums(task: Task, app: NodeApp) -> Reply:
    """Histograms that count more rows than the confusion matrix: a node inflating its share of the AUC."""
    n, bins = 2, int(task.config["bins"])
    histograms = np.zeros((n, n, bins), np.int64)
    histograms[:, :, -1] = 1000
    params = ParamSet({"confusion": np.eye(n, dtype=np.int64), "histograms": histograms})
    return Reply(node_id=app.node_id, kind=task.kind, round=task.round, params=params)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as opened:
        yield opened


def _api(store: Store, fleet: Fleet, nodes: list[str]) -> TestClient:
    coordinator = Coordinator(store, InProcessFleet(nodes, fleet.factory))
    return TestClient(create_app(coordinator, admin_token=ADMIN))


def _registered(store: Store, package: ModelPackage) -> ModelPackage:
    record = register(store, package)
    store.set_model_alias(record.name, "champion", record.version)
    return package


def _binned(p: np.ndarray) -> np.ndarray:
    return np.minimum((p * BINS).astype(np.int64), BINS - 1)


def test_pooled_evaluation_equals_the_pooled_rows_and_a_lying_node_is_cut_out(tmp_path: Path, store: Store) -> None:
    fleet = Fleet(tmp_path)
    package = _registered(store, softmax_package())
    api = _api(store, fleet, [*NODES, "liar"])
    response = api.post("/api/models/churn@champion/evaluate", json={"dataset": "customers", "bins": BINS},
                        headers=AUTH)  # fmt: skip
    assert response.status_code == 200, response.text
    answer = EvaluationAnswer.model_validate_json(response.content)
    model = load_package(package)
    x = np.concatenate([fleet.data[n][0] for n in NODES])
    y = np.concatenate([fleet.data[n][1] for n in NODES])
    probabilities = model.predict_proba(x)
    assert answer.pooled is not None
    assert answer.pooled["confusion"] == confusion_matrix(y, probabilities.argmax(axis=1)).tolist()
    assert answer.pooled["auc"] == pytest.approx(roc_auc_score(y, _binned(probabilities[:, 1])), rel=1e-12)
    assert answer.pooled["rows"] == sum(NODES.values())
    assert [answer.nodes[n]["rows"] for n in NODES] == list(NODES.values())
    assert not answer.nodes["liar"]["ok"] and "rejected" in answer.nodes["liar"]["error"]


def test_pooled_regression_evaluation_equals_the_pooled_rows(tmp_path: Path, store: Store) -> None:
    fleet = Fleet(tmp_path, task="regression")
    package = _registered(store, linear_package())
    api = _api(store, fleet, list(NODES))
    response = api.post("/api/models/spend/evaluate", json={"dataset": "customers"}, headers=AUTH)
    assert response.status_code == 200, response.text
    pooled = EvaluationAnswer.model_validate_json(response.content).pooled
    x = np.concatenate([fleet.data[n][0] for n in NODES])
    y = np.concatenate([fleet.data[n][1] for n in NODES]).astype(np.float32)
    assert pooled is not None
    assert pooled["mse"] == pytest.approx(mean_squared_error(y, load_package(package).predict(x)), rel=1e-9)


def test_scoring_through_the_api_writes_each_nodes_table_and_answers_counts(tmp_path: Path, store: Store) -> None:
    fleet = Fleet(tmp_path)
    _registered(store, softmax_package())
    api = _api(store, fleet, list(NODES))
    body = {"dataset": "customers", "write": "churn_scores", "keys": ["id"]}
    response = api.post("/api/models/churn@champion/score", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    answer = ScoringAnswer.model_validate_json(response.content)
    for name, count in NODES.items():
        assert len(table_rows(tmp_path / name / "node.db", "churn_scores")) == count
        assert set(answer.nodes[name]) == {"ok", "error", "rows_scored", "rows_skipped", "predicted", "suppressed"}
    assert answer.pooled["rows_scored"] == sum(NODES.values())


@pytest.mark.parametrize(
    ("body", "status", "match"),
    [
        ({"dataset": "customers", "write": "x; DROP TABLE customers", "keys": ["id"]}, 422, "write table"),
        ({"dataset": "customers", "write": "scores", "keys": []}, 422, "keys"),
        ({"dataset": "customers", "write": "scores", "keys": ["id"], "nodes": ["ghost"]}, 422, "not connected"),
        ({"dataset": "customers", "write": "scores", "keys": ["id"], "rows": [[1, 2]]}, 422, "rows"),
    ],
)
def test_bad_scoring_requests_are_refused_before_any_node_is_asked(
    tmp_path: Path, store: Store, body: dict[str, object], status: int, match: str
) -> None:
    fleet = Fleet(tmp_path)
    _registered(store, softmax_package())
    response = _api(store, fleet, list(NODES)).post("/api/models/churn/score", json=body, headers=AUTH)
    assert response.status_code == status and match in response.json()["detail"], response.text
    for name in NODES:
        assert not (tmp_path / name / "node.db").read_bytes().count(b"CREATE TABLE scores")


def test_an_unknown_model_is_404(tmp_path: Path, store: Store) -> None:
    response = _api(store, Fleet(tmp_path), list(NODES)).post(
        "/api/models/nobody@champion/evaluate", json={"dataset": "customers"}, headers=AUTH
    )
    assert response.status_code == 404, response.text


def test_cli_scores_and_evaluates_through_a_coordinator_on_loopback(tmp_path: Path, store: Store) -> None:
    fleet = Fleet(tmp_path)
    _registered(store, softmax_package())
    app = create_app(Coordinator(store, InProcessFleet(list(NODES), fleet.factory)), admin_token=ADMIN)
    with served_on_loopback(api_server(app, host="127.0.0.1", port=0)) as port:
        api = f"http://127.0.0.1:{port}"
        env = {"FEDLEARN_ADMIN_TOKEN": ADMIN, "COLUMNS": "200"}
        runner = CliRunner()
        ref, data = ["churn@champion", "--dataset", "customers", "--coordinator", api], ["--write", "churn_scores"]
        scored = runner.invoke(cli_app, ["models", "score-remote", *ref, *data, "--key", "id"], env=env)
        evaluated = runner.invoke(cli_app, ["models", "evaluate-remote", *ref, "--json"], env=env)
        with CoordinatorClient(api, admin_token=ADMIN) as client:
            again = client.score_remote("churn@champion", dataset="customers", write="churn_scores", keys=["id"])
    assert scored.exit_code == 0, scored.output
    assert "(all)" in scored.output and str(sum(NODES.values())) in scored.output
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.output)["pooled"]["rows"] == sum(NODES.values())
    assert again.pooled["rows_scored"] == sum(NODES.values())
    assert len(table_rows(tmp_path / "node-b" / "node.db", "churn_scores")) == NODES["node-b"]


def _lying_counts(task: Task, app: NodeApp) -> Reply:
    """A scoring reply claiming a negative row count and a flood of metrics."""
    metrics = {"rows_scored": -5.0, "rows_skipped": 0.0, **{f"predicted/{i}": 1.0 for i in range(20_000)}}
    return Reply(node_id=app.node_id, kind=task.kind, round=task.round, metrics=metrics)


def test_a_scoring_reply_that_lies_about_its_counts_is_rejected(tmp_path: Path, store: Store) -> None:
    fleet = Fleet(tmp_path)
    fleet.apps["liar"] = NodeApp(node_id="liar", handlers={SCORE: _lying_counts})
    _registered(store, softmax_package())
    body = {"dataset": "customers", "write": "churn_scores", "keys": ["id"]}
    response = _api(store, fleet, ["node-a", "liar"]).post("/api/models/churn/score", json=body, headers=AUTH)
    answer = ScoringAnswer.model_validate_json(response.content)
    assert answer.nodes["node-a"]["ok"] and not answer.nodes["liar"]["ok"]
    assert "rejected" in answer.nodes["liar"]["error"]
    assert answer.pooled["rows_scored"] == NODES["node-a"]


def test_an_oversized_request_is_refused_unread(tmp_path: Path, store: Store) -> None:
    body = {"dataset": "customers", "write": "scores", "keys": ["id"], "nodes": ["n" * 1000] * 2000}
    response = _api(store, Fleet(tmp_path), list(NODES)).post("/api/models/churn/score", json=body, headers=AUTH)
    assert response.status_code == 413, response.text
