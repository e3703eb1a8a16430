"""The HTTP API in process, over a real store: the JSON on the wire and the client's reading of it."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from fedlearn.client.node_app import NodeApp
from fedlearn.core.params import ParamSet
from fedlearn.engine.engine import RunState
from fedlearn.engine.history import RoundRecord
from fedlearn.privacy.accountant import PoissonSampling
from fedlearn.privacy.ledger import Charge, PrivacyLedger
from fedlearn.runtime.coordinator import Coordinator
from fedlearn.runtime.store import Store
from fedlearn.simulation.inprocess import InProcessFleet
from fedlearn.web.api import create_app
from fedlearn.web.client import CoordinatorClient
from fedlearn.web.contract import NodeSummary, RunDetail

ADMIN = "test-admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
CONFIG = """
[run]
name = "api-test"
rounds = 2
seed = 7
[model]
learner = "numpy.softmax"
n_features = 4
n_classes = 3
[strategy]
name = "fedavg"
"""
RUN_FIELDS = {
    "id", "name", "status", "message", "error", "seed", "rounds_total", "rounds_done", "stop_requested",
    "created_at", "updated_at", "epsilon",
}  # fmt: skip


def _no_node(name: str) -> NodeApp:
    raise AssertionError(f"this fleet has no nodes, yet node {name!r} was asked for")


@pytest.fixture
def api(store: Store) -> TestClient:
    """The API over a coordinator that is never started: runs stay as the test leaves them."""
    coordinator = Coordinator(store, InProcessFleet([], _no_node))
    return TestClient(create_app(coordinator, admin_token=ADMIN))


def _submit(api: TestClient) -> dict[str, Any]:
    response = api.post("/api/runs", json={"config": CONFIG}, headers=AUTH)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_submitted_run_answers_with_every_summary_field(api: TestClient, store: Store) -> None:
    run = _submit(api)

    assert set(run) == RUN_FIELDS
    assert (run["status"], run["error"], run["rounds_total"]) == ("pending", None, 2)
    assert run["created_at"] == store.get_run(run["id"]).created_at.isoformat()


def test_failed_run_shows_the_error_that_failed_it(api: TestClient, store: Store) -> None:
    run_id = _submit(api)["id"]
    store.set_run_status(run_id, "failed", "needed 3 nodes but only 0 were available", error="QuorumError")

    response = api.get(f"/api/runs/{run_id}", headers=AUTH)

    detail = RunDetail.model_validate_json(response.content)
    assert set(response.json()) == RUN_FIELDS | {"config", "history", "privacy"}
    assert (detail.status, detail.error, detail.config, detail.history) == ("failed", "QuorumError", CONFIG, [])
    assert detail.privacy is None


def test_nodes_answer_parses_as_the_contract_says(api: TestClient, store: Store) -> None:
    store.add_node("node-a")
    store.add_node("node-b")
    store.revoke_node("node-b")

    response = api.get("/api/nodes", headers=AUTH)

    nodes = [NodeSummary.model_validate(n) for n in response.json()]
    assert [(n.name, n.status, n.last_seen) for n in nodes] == [
        ("node-a", "offline", None),
        ("node-b", "revoked", None),
    ]


def test_unknown_run_is_a_404_whose_detail_names_it(api: TestClient) -> None:
    response = api.get("/api/runs/nope", headers=AUTH)

    assert response.status_code == 404
    assert response.json() == {"detail": "no run with id 'nope' in this store; `fedlearn runs list` shows the runs"}


def test_bad_run_config_is_a_422_naming_the_key(api: TestClient) -> None:
    response = api.post("/api/runs", json={"config": CONFIG + "fraction = 7\n"}, headers=AUTH)

    assert response.status_code == 422
    assert "`fraction` must be in (0, 1]; got 7" in response.json()["detail"]


def test_health_needs_no_token(api: TestClient) -> None:
    assert api.get("/api/health").json() == {"status": "ok", "nodes_connected": 0}


DP_CONFIG = (
    CONFIG
    + """
[privacy.differential_privacy]
enabled = true
mechanism = "central"
clip = 1.0
noise_multiplier = 1.0
epsilon = 50.0
delta = 1e-5
"""
)


def dp_checkpoint(store: Store, config: str, rounds: int, *, method: str = "rdp") -> tuple[str, PrivacyLedger]:
    """A run checkpointed after ``rounds`` DP rounds, as the engine leaves it: each record holds ε so far."""
    run_id = store.create_run("dp-run", config, seed=7, rounds=5)
    ledger = PrivacyLedger(delta=1e-5, method=method)  # type: ignore[arg-type]
    history = []
    for number in range(1, rounds + 1):
        ledger = ledger.plus(Charge(noise_multiplier=2.0, sampling=PoissonSampling(rate=0.5)))
        history.append(RoundRecord(round=number, sampled=2, replies=2, num_examples=20, duration_s=0.1,
                                   bytes_sent=1, bytes_received=1, epsilon=ledger.epsilon()))  # fmt: skip
    state = RunState(round=rounds, params=ParamSet(), strategy_state=ParamSet(), history=tuple(history), ledger=ledger)
    store.save_checkpoint(run_id, state)
    return run_id, ledger


def test_dp_run_shows_its_privacy_and_each_rounds_epsilon(api: TestClient, store: Store) -> None:
    run_id, ledger = dp_checkpoint(store, DP_CONFIG, 3)

    response = api.get(f"/api/runs/{run_id}", headers=AUTH)

    body = response.json()
    assert body["privacy"] == {
        "epsilon": ledger.epsilon(),
        "delta": 1e-5,
        "budget": 50.0,
        "accountant": "rdp",
        "charges": [{"count": 3, "noise_multiplier": 2.0, "sampling": {"poisson": 0.5}}],
    }
    assert [record["epsilon"] for record in body["history"]] == [r.epsilon for r in store.round_history(run_id)]


def test_dp_run_that_only_reports_epsilon_has_no_budget(api: TestClient, store: Store) -> None:
    run_id, _ = dp_checkpoint(store, DP_CONFIG.replace("epsilon = 50.0", "epsilon = inf"), 1)

    detail = RunDetail.model_validate_json(api.get(f"/api/runs/{run_id}", headers=AUTH).content)

    assert detail.privacy is not None and detail.privacy.budget is None


def test_dp_run_whose_history_lacks_epsilon_has_it_composed_from_the_ledger(api: TestClient, store: Store) -> None:
    run_id = store.create_run("dp-run", DP_CONFIG, seed=7, rounds=5)
    ledger = PrivacyLedger(delta=1e-5, charges=(Charge(noise_multiplier=2.0, count=4),))
    store.save_checkpoint(run_id, RunState(round=1, params=ParamSet(), strategy_state=ParamSet(), ledger=ledger))

    detail = RunDetail.model_validate_json(api.get(f"/api/runs/{run_id}", headers=AUTH).content)

    assert detail.privacy is not None and detail.privacy.epsilon == ledger.epsilon()


def test_client_reads_a_dp_runs_privacy_as_the_server_sent_it(
    api: TestClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, ledger = dp_checkpoint(store, DP_CONFIG, 2)
    client = CoordinatorClient("http://testserver", admin_token=ADMIN)
    api.headers.update(AUTH)
    monkeypatch.setattr(client, "_http", api)  # the client's own parsing, over the app in process

    detail = client.run(run_id)

    assert detail.privacy is not None
    assert (detail.privacy.epsilon, detail.privacy.budget, detail.privacy.accountant) == (ledger.epsilon(), 50.0, "rdp")
    assert detail.history[-1].epsilon == ledger.epsilon()


def test_dp_run_before_its_first_round_shows_nothing_spent_of_its_budget(api: TestClient, store: Store) -> None:
    run_id = store.create_run("dp-run", DP_CONFIG, seed=7, rounds=5)

    detail = RunDetail.model_validate_json(api.get(f"/api/runs/{run_id}", headers=AUTH).content)

    assert detail.privacy is not None
    assert detail.privacy.model_dump() == {"epsilon": 0.0, "delta": 1e-5, "budget": 50.0, "accountant": "rdp",
                                           "charges": []}  # fmt: skip


def test_run_list_shows_the_epsilon_each_dp_run_has_spent(api: TestClient, store: Store) -> None:
    dp_id, ledger = dp_checkpoint(store, DP_CONFIG, 2)
    plain_id = _submit(api)["id"]

    listed = {run["id"]: run["epsilon"] for run in api.get("/api/runs", headers=AUTH).json()}

    assert listed == {dp_id: ledger.epsilon(), plain_id: None}


def test_stopping_a_dp_run_answers_with_the_epsilon_it_has_spent(api: TestClient, store: Store) -> None:
    run_id, ledger = dp_checkpoint(store, DP_CONFIG, 1)
    store.set_run_status(run_id, "running", "")

    stopped = api.post(f"/api/runs/{run_id}/stop", headers=AUTH).json()

    assert (stopped["stop_requested"], stopped["epsilon"]) == (True, ledger.epsilon())
