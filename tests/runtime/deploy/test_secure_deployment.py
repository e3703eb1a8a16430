"""Deployments as a hospital would run them: mutual TLS, and the state in PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from fedlearn.runtime.certs import init_ca, issue
from tests.runtime.deploy.conftest import Deployment, node_toml, run_toml

pytestmark = pytest.mark.slow
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    directory = tmp_path / "pki"
    init_ca(directory)
    issue(directory, "coordinator", kind="server", hosts=["127.0.0.1", "localhost"])
    issue(directory, "node-000", kind="client")
    return directory


@pytest.fixture
def postgres_store() -> Iterator[str]:
    schema = f"fedlearn_deploy_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{POSTGRES_URL}?schema={schema}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_mutual_tls_deployment_completes_a_run(deployment: Deployment, pki: Path) -> None:
    deployment.coordinator_args = ["--tls-cert", str(pki / "coordinator.pem"), "--tls-key",
                                   str(pki / "coordinator.key"), "--tls-client-ca", str(pki / "ca.pem")]  # fmt: skip
    deployment.node_args = ["--tls-ca", str(pki / "ca.pem"), "--tls-cert", str(pki / "node-000.pem"),
                            "--tls-key", str(pki / "node-000.key")]  # fmt: skip
    deployment.register("node-000")
    deployment.start_coordinator()
    deployment.start_node("node-000", node_toml(0, 1))
    deployment.wait_for_nodes(1)

    run = deployment.wait_for_run(deployment.submit(run_toml(rounds=2, nodes=1)))

    assert run.status == "completed", run.message


def test_mutual_tls_refuses_a_node_without_a_certificate(deployment: Deployment, pki: Path) -> None:
    deployment.coordinator_args = ["--tls-cert", str(pki / "coordinator.pem"), "--tls-key",
                                   str(pki / "coordinator.key"), "--tls-client-ca", str(pki / "ca.pem")]  # fmt: skip
    deployment.register("node-000")
    deployment.start_coordinator()

    deployment.start_node("node-000", node_toml(0, 1), "--tls-ca", str(pki / "ca.pem"))

    deployment.wait_until(lambda: "TLS" in deployment.log("node-000") or "handshake" in deployment.log("node-000"),
                          "the node to report the refused handshake", timeout=30)  # fmt: skip
    assert deployment.online() == set()
    deployment.wait_until(lambda: "sent no client certificate" in deployment.log("coordinator"),
                          "the coordinator to name the peer", timeout=30)  # fmt: skip
    assert "TLS handshake with 127.0.0.1:" in deployment.log("coordinator")
    assert "SSL_ERROR" not in deployment.log("coordinator")  # no raw OpenSSL text


def test_plaintext_node_cannot_talk_to_a_tls_coordinator(deployment: Deployment, pki: Path) -> None:
    deployment.coordinator_args = ["--tls-cert", str(pki / "coordinator.pem"),
                                   "--tls-key", str(pki / "coordinator.key")]  # fmt: skip
    deployment.register("node-000")
    deployment.start_coordinator()

    deployment.start_node("node-000", node_toml(0, 1))

    deployment.wait_until(lambda: "reconnecting" in deployment.log("node-000"), "a failed attempt", timeout=30)
    assert deployment.online() == set()
    deployment.wait_until(lambda: "does not speak TLS" in deployment.log("coordinator"),
                          "the coordinator to name the peer", timeout=30)  # fmt: skip
    assert "TLS handshake with 127.0.0.1:" in deployment.log("coordinator")


def test_deployment_on_postgresql_store_completes_and_persists_history(tmp_path: Path, postgres_store: str) -> None:
    deployment = Deployment(tmp=tmp_path, store_url=postgres_store)
    try:
        deployment.register("node-000", "node-001")
        deployment.start_coordinator()
        for i, name in enumerate(("node-000", "node-001")):
            deployment.start_node(name, node_toml(i, 2))
        deployment.wait_for_nodes(2)

        run = deployment.wait_for_run(deployment.submit(run_toml(rounds=3, nodes=2)))
    finally:
        deployment.close()

    assert run.status == "completed", run.message
    assert [r.round for r in run.history] == [1, 2, 3]


def test_a_coordinator_with_trusted_data_runs_fltrust(deployment: Deployment) -> None:
    trusted = deployment.tmp / "trusted.toml"
    trusted.write_text(
        '[datasets.root]\nsource = "builtin"\nname = "digits"\nnodes = 20\nindex = 19\nseed = 3\n'
    )
    deployment.register("node-000", "node-001")
    deployment.start_coordinator("--trusted-data", str(trusted))
    for i, name in enumerate(("node-000", "node-001")):
        deployment.start_node(name, node_toml(i, 2))
    deployment.wait_for_nodes(2)

    extra = '\n[strategy.reducer]\nname = "fltrust"\ntrusted_dataset = "root"\n'
    run = deployment.wait_for_run(deployment.submit(run_toml(rounds=2, nodes=2, extra=extra)))

    assert run.status == "completed", run.message
    assert [r.round for r in run.history] == [1, 2]
