"""Exact federated analytics through a deployed coordinator: real node processes on loopback.

Each node holds its part of a built-in dataset, split exactly as its NODE.toml says. The tests
rebuild the pooled rows from those same NODE.toml files and check that the models fitted over
the network equal scikit-learn's on the pooled rows, and that refusals come back as clear errors.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LinearRegression
from sklearn.naive_bayes import GaussianNB

from fedlearn.core.codec import decode, decode_with_metadata
from fedlearn.core.errors import PrivacyError
from fedlearn.runtime.node_config import load_node_config
from tests.analytics.conftest import assert_close
from tests.runtime.deploy.conftest import ADMIN, ROOT, Deployment, node_toml, run_toml
from tests.runtime.deploy.test_deployment import SLOW, _simulated

pytestmark = pytest.mark.slow
NODES = ["node-000", "node-001", "node-002"]
STRICT = "node-strict"
DIABETES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
IRIS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
AUTH = {"Authorization": f"Bearer {ADMIN}"}
BOUNDS = "bounds = { " + ", ".join(f"{c} = [-0.25, 0.25]" for c in DIABETES) + ", y = [0, 400] }"
"""The per-row bounds each node declares for differentially private analytics of its diabetes rows."""


def datasets_toml(index: int) -> str:
    return "".join(
        f"""
[datasets.{name}]
source = "builtin"
name = "{name}"
nodes = 3
index = {index}
seed = 7
"""
        for name in ("diabetes", "iris")
    )


def clinic_toml(tmp: Path, index: int) -> str:
    """A SQLite table ``clinic`` holding node ``index``'s diabetes rows, declared as an SQL dataset (pushed down)."""
    builtin = tmp / f"builtin-{index}.toml"
    builtin.write_text(datasets_toml(index))
    part = load_node_config(builtin).load_datasets()["diabetes"]
    with sqlite3.connect(tmp / f"clinic-{index}.sqlite") as db:
        db.execute(f"CREATE TABLE visits ({', '.join(f'{c!r} REAL' for c in [*DIABETES, 'target'])})")
        rows = np.column_stack([part.x, part.y]).astype(np.float64).tolist()
        db.executemany(f"INSERT INTO visits VALUES ({', '.join('?' * (len(DIABETES) + 1))})", rows)
    source = f'source = "sql"\nurl = "sqlite:///{tmp / f"clinic-{index}.sqlite"}"\ntable = "visits"\n'
    return f'\n[datasets.clinic]\n{source}target = "target"\ntask = "regression"\n'


def _pooled(deployment: Deployment, dataset: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The rows the three nodes hold, read from their own NODE.toml files exactly as they read them."""
    parts = [load_node_config(deployment.tmp / f"{n}.toml").load_datasets()[dataset] for n in NODES]
    x = np.concatenate([p.x for p in parts]).astype(np.float64)
    y = np.concatenate([p.y for p in parts])
    return x, y, [len(p) for p in parts]


def _members(dataset: str, *nodes: str) -> dict[str, str]:
    return dict.fromkeys(nodes or NODES, dataset)


def _post(deployment: Deployment, body: dict[str, Any], headers: dict[str, str] = AUTH) -> httpx.Response:
    return httpx.post(f"{deployment.api}/api/analytics", json=body, headers=headers, timeout=120)


def _cli(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from fedlearn.cli import main; main()", "analytics", "remote",
         "--coordinator", deployment.api, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "FEDLEARN_ADMIN_TOKEN": ADMIN, "COLUMNS": "200"},
    )  # fmt: skip


def audit_log(deployment: Deployment, node: str) -> Path:
    return deployment.tmp / f"{node}.audit.jsonl"


def audit_records(deployment: Deployment, node: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in audit_log(deployment, node).read_text().splitlines()]


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Three nodes holding diabetes and iris (the first keeping an audit log), and a fourth whose
    policy refuses them: a privacy threshold above their row counts, and all but one iris column."""
    tmp = tmp_path_factory.mktemp("analytics")
    deployed = Deployment(tmp=tmp, store_url=f"sqlite:///{tmp / 'coordinator.db'}")
    try:
        deployed.register(*NODES, STRICT)
        deployed.start_coordinator()
        for i, name in enumerate(NODES):
            audit = f"audit_log = '{audit_log(deployed, name)}'\n" if i == 0 else ""
            clinic = clinic_toml(tmp, i) if name == NODES[2] else ""  # summarised inside its SQLite database
            deployed.start_node(name, f"[policy]\n{audit}{BOUNDS}\n" + datasets_toml(i) + clinic)
        strict = f"[policy]\nmin_rows = 1000\ncolumns = {json.dumps([*DIABETES, *IRIS[1:], 'y'])}\n"
        deployed.start_node(STRICT, strict + datasets_toml(0))
        deployed.wait_for_nodes(4)
        yield deployed
    finally:
        deployed.close()


def test_linear_regression_over_the_nodes_equals_sklearn_on_their_pooled_rows(federation: Deployment) -> None:
    x, y, _ = _pooled(federation, "diabetes")

    with federation.client() as client:
        result = client.analytics(columns=DIABETES, target="y", members=_members("diabetes"), model="linear")

    reference = LinearRegression().fit(x, y)
    assert_close(result.attributes["coef_"], reference.coef_)
    assert_close(result.attributes["intercept_"], reference.intercept_)


def test_gaussian_nb_over_the_nodes_equals_sklearn_on_their_pooled_rows(federation: Deployment) -> None:
    x, y, _ = _pooled(federation, "iris")

    with federation.client() as client:
        result = client.analytics(
            columns=IRIS, target="y", task="classification", members=_members("iris"), model="gnb"
        )

    reference = GaussianNB().fit(x, y)
    np.testing.assert_array_equal(result.attributes["classes_"], reference.classes_)
    for name in ("theta_", "var_", "class_prior_"):
        assert_close(result.attributes[name], getattr(reference, name))


def test_secure_linear_regression_equals_sklearn_and_reports_no_members_rows(federation: Deployment) -> None:
    x, y, _ = _pooled(federation, "diabetes")

    with federation.client() as client:
        result = client.analytics(columns=DIABETES, target="y", members=_members("diabetes"), model="linear",
                                  secure=True)  # fmt: skip

    reference = LinearRegression().fit(x, y)
    assert_close(result.attributes["coef_"], reference.coef_, rtol=1e-9)
    assert_close(result.attributes["intercept_"], reference.intercept_, rtol=1e-9)
    assert result.secure and result.rows == len(x)
    assert [m.rows for m in result.members] == [None, None, None]


def test_cli_fits_secure_gaussian_nb_equal_to_sklearn(federation: Deployment, tmp_path: Path) -> None:
    x, y, _ = _pooled(federation, "iris")
    members = [arg for n in NODES for arg in ("--member", f"{n}=iris")]

    done = _cli(federation, "--columns", ",".join(IRIS), "--target", "y", "--task", "classification",
                *members, "--model", "gnb", "--secure", "--classes", "0,1,2", "--out", str(tmp_path / "gnb.st"))  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "hidden" in done.stdout
    fitted = decode(Path(tmp_path / "gnb.st").read_bytes())
    reference = GaussianNB().fit(x, y)
    for name in ("theta_", "var_"):
        assert_close(fitted[name], getattr(reference, name), rtol=1e-9)


def test_cli_fits_a_dp_linear_regression_and_reports_the_epsilon_each_node_spent(federation: Deployment) -> None:
    members = [arg for n in NODES for arg in ("--member", f"{n}=diabetes")]

    done = _cli(federation, "--columns", ",".join(DIABETES), "--target", "y", *members, "--model", "linear",
                "--dp-epsilon", "4", "--dp-delta", "1e-6")  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "differential privacy: ε = 4 at δ = 1e-06 per member (3 releases" in done.stdout
    released = [r["dp"]["epsilon"] for r in audit_records(federation, NODES[0]) if "epsilon" in r.get("dp", {})]
    assert released and released[-1] == pytest.approx(4.0, rel=1e-3)  # the node's own record of what it spent


def test_dp_analytics_over_http_names_each_members_release(federation: Deployment) -> None:
    with federation.client() as client:
        result = client.analytics(columns=DIABETES, target="y", members=_members("diabetes"), model="linear",
                                  dp={"epsilon": 2.0, "delta": 1e-6})  # fmt: skip

    assert result.privacy is not None
    assert result.privacy.epsilon == pytest.approx(2.0, rel=1e-3)
    assert sorted(r.node for r in result.privacy.releases) == NODES
    assert all(r.epsilon == pytest.approx(2.0, rel=1e-3) for r in result.privacy.releases)


def test_answer_reports_each_members_rows_and_agreeing_column_types(federation: Deployment) -> None:
    _, _, rows = _pooled(federation, "diabetes")

    with federation.client() as client:
        result = client.analytics(columns=DIABETES, target="y", members=_members("diabetes"), model="describe")

    assert [(m.node, m.rows) for m in result.members] == list(zip(NODES, rows, strict=True))
    assert result.rows == sum(rows) and result.problems == []
    assert {t for m in result.members for t in m.types.values()} == {"float"}


def test_describe_over_the_nodes_equals_the_pooled_column_statistics_without_extrema(federation: Deployment) -> None:
    x, y, _ = _pooled(federation, "diabetes")
    pooled = np.column_stack([x, y])

    with federation.client() as client:
        result = client.analytics(columns=DIABETES, target="y", members=_members("diabetes"), model="describe")

    table = {k: [getattr(row, k) for row in result.description] for k in ("mean", "std", "min", "max")}
    assert [row.column for row in result.description] == [*DIABETES, "y"]
    assert_close(table["mean"], pooled.mean(axis=0))
    assert_close(table["std"], pooled.std(axis=0, ddof=1))
    assert table["min"] == table["max"] == [None] * 11  # values of single rows: the nodes' policies withhold them


def test_a_node_summarises_an_sql_dataset_inside_its_database_equal_to_its_rows(federation: Deployment) -> None:
    part = load_node_config(federation.tmp / f"{NODES[2]}.toml").load_datasets()["diabetes"]
    rows = np.column_stack([part.x, part.y]).astype(np.float64)

    with federation.client() as client:
        result = client.analytics(columns=DIABETES, target="y", members={NODES[2]: "clinic"}, model="describe")

    assert result.rows == len(rows)
    assert_close([row.mean for row in result.description], rows.mean(axis=0))
    assert_close([row.std for row in result.description], rows.std(axis=0, ddof=1))
    assert "clinic: in its database" in (federation.tmp / f"{NODES[2]}.log").read_text()


def test_cli_prints_withheld_extrema_as_unknown(federation: Deployment) -> None:
    done = _cli(federation, "--columns", "age,bmi", *(f"--member={n}=diabetes" for n in NODES), "--model", "describe")

    assert done.returncode == 0, done.stderr
    age = next(line for line in done.stdout.splitlines() if line.startswith("│ age "))
    assert [cell.strip() for cell in age.split("│")[4:6]] == ["unknown", "unknown"]  # min, max


def test_cli_fits_lda_over_the_nodes_equal_to_sklearn_and_saves_it(federation: Deployment, tmp_path: Path) -> None:
    x, y, _ = _pooled(federation, "iris")
    out = tmp_path / "lda.safetensors"

    done = _cli(federation, "--columns", ",".join(IRIS), "--target", "y", "--task", "classification",
                *(f"--member={n}=iris" for n in NODES), "--model", "lda", "--out", str(out))  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "lda coefficients by class" in done.stdout and f"fitted lda on {len(x)} rows from 3 nodes" in done.stdout
    arrays, metadata = decode_with_metadata(out.read_bytes())
    reference = LinearDiscriminantAnalysis().fit(x, y)
    assert_close(arrays["coef_"], reference.coef_)
    assert_close(arrays["intercept_"], reference.intercept_)
    assert metadata["model"] == "lda"


def test_a_node_below_its_privacy_threshold_is_refused_with_its_reason(federation: Deployment) -> None:
    with federation.client() as client, pytest.raises(PrivacyError) as refused:
        client.analytics(columns=DIABETES, target="y", members=_members("diabetes", NODES[0], STRICT), model="linear")

    assert f"node {STRICT!r}: refusing to share" in str(refused.value)
    assert "fewer than 1000 rows, the privacy threshold" in str(refused.value)


def test_cli_reports_a_refusal_in_one_line_with_the_privacy_exit_code(federation: Deployment) -> None:
    done = _cli(federation, "--columns", ",".join(DIABETES), "--target", "y", f"--member={STRICT}=diabetes",
                "--model", "linear")  # fmt: skip

    assert done.returncode == PrivacyError.exit_code
    assert "fewer than 1000 rows, the privacy threshold" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("column", [IRIS[0], "ssn"], ids=["withheld", "missing"])
def test_a_column_outside_a_nodes_allow_list_is_refused_as_if_it_did_not_exist(
    federation: Deployment, column: str
) -> None:
    body = {"columns": [IRIS[1], column], "members": {STRICT: "iris"}, "model": "describe"}

    response = _post(federation, body)

    assert response.status_code == 422
    assert response.json()["detail"] == f"node {STRICT!r}: column {column!r} is not available on this node"


def test_a_real_node_records_each_task_it_answered_in_its_audit_log(federation: Deployment) -> None:
    with federation.client() as client:
        client.analytics(columns=["age", "bmi"], target="y", members=_members("diabetes"), model="linear")

    records = audit_records(federation, NODES[0])
    summaries = [r for r in records if r.get("kind") == "analytics.summarize" and r["columns"] == ["age", "bmi", "y"]]
    _, _, rows = _pooled(federation, "diabetes")
    assert records[0]["event"] == "start" and records[0]["policy"]["release_extrema"] is False
    assert summaries and summaries[-1]["dataset"] == "diabetes" and summaries[-1]["rows"] == rows[0]
    assert summaries[-1]["outcome"] == "released" and summaries[-1]["released"]["moments/mean"] == [3]
    assert stat.S_IMODE(audit_log(federation, NODES[0]).stat().st_mode) == 0o600


def test_over_http_a_privacy_refusal_is_a_403(federation: Deployment) -> None:
    body = {"columns": DIABETES, "target": "y", "members": {STRICT: "diabetes"}, "model": "describe"}

    response = _post(federation, body)

    assert response.status_code == 403 and "privacy threshold" in response.json()["detail"]


def test_a_node_that_is_not_connected_is_named_before_anything_is_sent(federation: Deployment) -> None:
    body = {"columns": DIABETES, "target": "y", "members": {NODES[0]: "diabetes", "node-999": "diabetes"},
            "model": "linear"}  # fmt: skip

    response = _post(federation, body)

    assert response.status_code == 503
    assert response.json()["detail"].startswith("node 'node-999' is not connected to the coordinator; connected: ")


def test_an_unknown_dataset_is_refused_naming_the_node_and_its_datasets(federation: Deployment) -> None:
    body = {"columns": DIABETES, "target": "y", "members": {NODES[1]: "visits"}, "model": "linear"}

    response = _post(federation, body)

    assert response.status_code == 422
    expected = "node 'node-001': this node has no dataset 'visits'; it has ['diabetes', 'iris']"
    assert response.json()["detail"] == expected


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"model": "gnb"}, "`model` 'gnb' needs `task` = 'classification'; got 'regression'"),
        ({"colour": "red"}, "unknown field `colour`"),
        ({"options": {"alpha": -1}}, "`options.alpha`: Input should be greater than or equal to 0; got -1"),
        ({"members": {}}, "`members`: Dictionary should have at least 1 item after validation, not 0; got {}"),
        ({"target": None}, "`model` 'linear' needs a `target` column"),
    ],
)
def test_a_bad_request_is_a_422_naming_the_field(federation: Deployment, change: dict[str, Any], detail: str) -> None:
    body = {"columns": DIABETES, "target": "y", "members": _members("diabetes"), "model": "linear", **change}

    response = _post(federation, body)

    assert response.status_code == 422 and response.json()["detail"] == detail


def test_analytics_needs_the_admin_token(federation: Deployment) -> None:
    body = {"columns": DIABETES, "target": "y", "members": _members("diabetes"), "model": "linear"}

    response = _post(federation, body, headers={})

    assert response.status_code == 401


# -- analytics while a training run holds the nodes ---------------------------------------------


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Three nodes that train slowly (1.5 s per fit) on digits and also hold diabetes; the first keeps an audit log."""
    tmp = tmp_path_factory.mktemp("training")
    deployed = Deployment(tmp=tmp, store_url=f"sqlite:///{tmp / 'coordinator.db'}")
    try:
        deployed.register(*NODES)
        deployed.start_coordinator()
        for i, name in enumerate(NODES):
            config = node_toml(i, 3, learner=SLOW, options="{ delay = 1.5 }")
            config = config.replace("[node]\n", '[node]\ndataset = "digits"\n') + datasets_toml(i)
            policy = f"[policy]\naudit_log = '{audit_log(deployed, name)}'\n" if i == 0 else ""
            deployed.start_node(name, config + policy)
        deployed.wait_for_nodes(3)
        yield deployed
    finally:
        deployed.close()


def test_analytics_during_a_round_that_outlasts_its_wait_is_busy_naming_the_run(training: Deployment) -> None:
    run_id = training.submit(run_toml(rounds=3))
    training.wait_for_run(run_id, rounds=1)
    time.sleep(0.3)  # well inside round 2 now, whose fits take 1.5 s
    body = {"columns": DIABETES, "target": "y", "members": _members("diabetes"), "model": "linear", "wait": 0.2}

    response = _post(training, body)

    assert response.status_code == 409
    assert f"the nodes are busy: training run {run_id} did not free them within 0.2 s" in response.json()["detail"]
    assert training.wait_for_run(run_id).status == "completed"


def test_analytics_during_a_run_is_answered_between_rounds_and_disturbs_neither(training: Deployment) -> None:
    x, y, _ = _pooled(training, "diabetes")
    config = run_toml(rounds=4)
    run_id = training.submit(config)
    training.wait_for_run(run_id, rounds=1)

    with training.client() as client:
        result = client.analytics(columns=DIABETES, target="y", members=_members("diabetes"), model="linear", wait=30)
    during = training.run(run_id)
    run = training.wait_for_run(run_id)

    assert during.status == "running" and during.rounds_done < 4
    assert_close(result.attributes["coef_"], LinearRegression().fit(x, y).coef_)
    assert run.status == "completed", run.message
    with training.client() as client:
        assert decode(client.model(run_id)).bitwise_equal(_simulated(config))


def test_a_real_node_records_the_fit_and_evaluate_tasks_of_a_run(training: Deployment) -> None:
    run_id = training.submit(run_toml(rounds=1))
    assert training.wait_for_run(run_id).status == "completed"

    records = [r for r in audit_records(training, NODES[0]) if r.get("run_id") == run_id]

    fits = [r for r in records if r["kind"] == "fit"]
    assert fits and fits[0]["dataset"] == "digits" and fits[0]["outcome"] == "released" and fits[0]["rows"] > 0
    assert len(fits[0]["columns"]) == 64 and fits[0]["columns"][0] == "pixel_0_0"
    assert {r["kind"] for r in records} <= {"fit", "evaluate"}
