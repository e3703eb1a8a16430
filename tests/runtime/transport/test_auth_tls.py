"""Tokens on every call, TLS and mutual TLS, over a real loopback server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pytest

from fedlearn.core.errors import ConfigError, DeadlineExceeded
from fedlearn.core.messages import Task
from fedlearn.core.params import ParamSet
from fedlearn.runtime.proto import fleet_pb2 as pb
from fedlearn.runtime.tls import ClientTLS, ServerTLS
from tests.runtime.transport.conftest import AgentThread, Coordinator, metadata, receive_all, wait_until
from tests.runtime.transport.pki import Pki, make_pki

StartCoordinator = Callable[..., Coordinator]
StartAgent = Callable[..., AgentThread]


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


def _round_trip(coordinator: Coordinator) -> None:
    wait_until(lambda: coordinator.fleet.available() == ["a"])
    params = ParamSet({"w": np.arange(10, dtype=np.float32)})
    coordinator.fleet.send("a", Task(kind="fit", round=1, params=params))
    [reply] = receive_all(coordinator.fleet, 1)
    assert reply.ok, reply.error


def _ping_session(
    coordinator: Coordinator, md: tuple[tuple[str, str], ...], protocol: int = 1, identity_key: bytes = b""
) -> grpc.RpcError:
    """Say Hello and keep the stream open until the coordinator answers with an error."""
    answered = threading.Event()

    def hello() -> Iterator[pb.NodeMessage]:
        yield pb.NodeMessage(hello=pb.Hello(protocol=protocol, identity_key=identity_key))
        answered.wait(5)

    with pytest.raises(grpc.RpcError) as refused:
        list(coordinator.stub().Session(hello(), metadata=md, timeout=5))
    answered.set()
    return refused.value


def test_agent_with_a_bad_token_stops_with_a_clear_message(
    start_coordinator: StartCoordinator, start_agent: StartAgent
) -> None:
    coordinator = start_coordinator()

    agent = start_agent(coordinator, "a", token="stolen")
    assert agent.thread is not None
    agent.thread.join(timeout=5)

    assert isinstance(agent.error, ConfigError)
    assert str(agent.error) == (
        "the coordinator refused node a: unknown or revoked token; ask the operator for a new token"
    )
    assert coordinator.fleet.available() == []


def test_unknown_node_is_refused_as_unauthenticated(start_coordinator: StartCoordinator) -> None:
    coordinator = start_coordinator()

    refused = _ping_session(coordinator, metadata("mallory", "whatever"))

    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "'mallory' is unknown or its token was revoked" in (refused.details() or "")


@pytest.mark.parametrize("method", ["Download", "Upload"])
def test_every_call_needs_a_token(start_coordinator: StartCoordinator, method: str) -> None:
    coordinator = start_coordinator()
    stub = coordinator.stub()

    with pytest.raises(grpc.RpcError) as refused:
        if method == "Download":
            list(stub.Download(pb.BlobRequest(digest="0" * 64), timeout=5))
        else:
            stub.Upload(iter([pb.UploadMessage(header=pb.ReplyHeader(task_id="t"))]), timeout=5)

    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "x-fedlearn-token" in (refused.value.details() or "")


def test_a_failing_token_store_is_unavailable_not_a_refusal(start_coordinator: StartCoordinator) -> None:
    coordinator = start_coordinator()

    def broken(node: str, token: str) -> bool:
        raise OSError("database is down")

    coordinator.fleet.authenticate = broken
    refused = _ping_session(coordinator, metadata())

    assert refused.code() == grpc.StatusCode.UNAVAILABLE


def test_an_identity_key_of_the_wrong_length_is_refused_as_invalid(start_coordinator: StartCoordinator) -> None:
    coordinator = start_coordinator(bind_identity=lambda node, key: None)

    refused = _ping_session(coordinator, metadata(), identity_key=b"short")

    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "5-byte identity key" in (refused.details() or "")
    assert coordinator.fleet.available() == []


def test_an_agent_whose_identity_key_is_not_the_bound_one_stops_with_the_reason(
    start_coordinator: StartCoordinator, start_agent: StartAgent
) -> None:
    coordinator = start_coordinator(bind_identity=lambda node, key: f"node {node} presented another identity key")

    agent = start_agent(coordinator, "a", identity_key=bytes(32))
    assert agent.thread is not None
    agent.thread.join(timeout=5)

    assert isinstance(agent.error, ConfigError)
    assert str(agent.error) == "the coordinator refused node a: node a presented another identity key"
    assert coordinator.fleet.available() == []


def test_a_failing_identity_store_is_unavailable_not_a_refusal(start_coordinator: StartCoordinator) -> None:
    def broken(node: str, key: bytes) -> str | None:
        raise OSError("database is down")

    coordinator = start_coordinator(bind_identity=broken)

    refused = _ping_session(coordinator, metadata(), identity_key=bytes(32))

    assert refused.code() == grpc.StatusCode.UNAVAILABLE
    assert "cannot check identity keys" in (refused.details() or "")


def test_tls_round_trip(start_coordinator: StartCoordinator, start_agent: StartAgent, pki: Pki) -> None:
    coordinator = start_coordinator(tls=ServerTLS(cert=pki.server_cert, key=pki.server_key))

    start_agent(coordinator, "a", tls=ClientTLS(ca=pki.ca))

    _round_trip(coordinator)


def test_mutual_tls_round_trip(start_coordinator: StartCoordinator, start_agent: StartAgent, pki: Pki) -> None:
    coordinator = start_coordinator(tls=ServerTLS(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca))

    start_agent(coordinator, "a", tls=ClientTLS(ca=pki.ca, cert=pki.client_cert, key=pki.client_key))

    _round_trip(coordinator)


def test_mutual_tls_server_refuses_a_client_without_a_certificate(
    start_coordinator: StartCoordinator, start_agent: StartAgent, pki: Pki
) -> None:
    coordinator = start_coordinator(tls=ServerTLS(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca))

    agent = start_agent(coordinator, "a", tls=ClientTLS(ca=pki.ca), give_up_after=0.5)
    assert agent.thread is not None
    agent.thread.join(timeout=10)

    assert isinstance(agent.error, DeadlineExceeded)
    assert "node a has had no session with the coordinator" in str(agent.error)
    assert coordinator.fleet.available() == []


def test_mutual_tls_refuses_a_node_presenting_another_nodes_certificate(
    start_coordinator: StartCoordinator, start_agent: StartAgent, pki: Pki
) -> None:
    coordinator = start_coordinator(tls=ServerTLS(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca))

    agent = start_agent(coordinator, "b", tls=ClientTLS(ca=pki.ca, cert=pki.client_cert, key=pki.client_key))
    assert agent.thread is not None
    agent.thread.join(timeout=10)

    assert isinstance(agent.error, ConfigError)
    assert str(agent.error) == (
        "the coordinator refused node b: its client certificate is issued to 'a', not 'b'; with mutual TLS each "
        "node must present the certificate issued for its own name"
    )
    assert coordinator.fleet.available() == []


@pytest.mark.parametrize("method", ["Download", "Upload"])
def test_mutual_tls_binds_every_call_to_the_certificates_name(
    start_coordinator: StartCoordinator, pki: Pki, method: str
) -> None:
    coordinator = start_coordinator(tls=ServerTLS(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca))
    stub = coordinator.stub(ClientTLS(ca=pki.ca, cert=pki.other_cert, key=pki.other_key))

    with pytest.raises(grpc.RpcError) as refused:
        if method == "Download":
            list(stub.Download(pb.BlobRequest(digest="0" * 64), metadata=metadata("a"), timeout=5))
        else:
            stub.Upload(iter([pb.UploadMessage(header=pb.ReplyHeader(task_id="t"))]), metadata=metadata("a"), timeout=5)

    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "issued to 'b', not 'a'" in (refused.value.details() or "")


def test_server_only_tls_does_not_ask_for_a_certificate_name(
    start_coordinator: StartCoordinator, start_agent: StartAgent, pki: Pki
) -> None:
    coordinator = start_coordinator(tls=ServerTLS(cert=pki.server_cert, key=pki.server_key))

    start_agent(coordinator, "a", tls=ClientTLS(ca=pki.ca, cert=pki.other_cert, key=pki.other_key))

    _round_trip(coordinator)


def test_plaintext_client_cannot_talk_to_a_tls_server(start_coordinator: StartCoordinator, pki: Pki) -> None:
    coordinator = start_coordinator(tls=ServerTLS(cert=pki.server_cert, key=pki.server_key))

    refused = _ping_session(coordinator, metadata())

    assert refused.code() == grpc.StatusCode.UNAVAILABLE


def test_a_node_speaking_another_protocol_is_refused_with_the_reason(start_coordinator: StartCoordinator) -> None:
    coordinator = start_coordinator()

    refused = _ping_session(coordinator, metadata(), protocol=99)

    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "protocol 99" in (refused.details() or "")


def test_a_full_coordinator_refuses_more_nodes(start_coordinator: StartCoordinator, start_agent: StartAgent) -> None:
    coordinator = start_coordinator(max_nodes=1)
    start_agent(coordinator, "a")
    wait_until(lambda: coordinator.fleet.available() == ["a"])

    refused = _ping_session(coordinator, metadata("b"))

    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_nodes=1" in (refused.details() or "")
