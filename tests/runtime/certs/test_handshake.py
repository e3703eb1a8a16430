"""Issued files in real TLS handshakes: a gRPC server on loopback, clients with and without certs."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from fedlearn.runtime.certs import CAFiles, CertFiles, init_ca, issue
from fedlearn.runtime.tls import ClientTLS, ServerTLS, load_client_tls, load_server_tls

SERVICE, METHOD = "fedlearn.test.Echo", "Call"


@contextmanager
def serving(tls: ServerTLS) -> Iterator[int]:
    """A real gRPC server on 127.0.0.1 that echoes bytes back; yields its port."""
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    echo = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {METHOD: echo}),))
    port = server.add_secure_port("127.0.0.1:0", tls.credentials())
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None)


def call(port: int, tls: ClientTLS) -> bytes:
    with grpc.secure_channel(f"127.0.0.1:{port}", tls.credentials(), options=tls.channel_options()) as channel:
        return channel.unary_unary(f"/{SERVICE}/{METHOD}")(b"ping", timeout=5)


def refused(port: int, tls: ClientTLS) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call(port, tls)
    return caught.value.code()  # type: ignore[attr-defined]


@pytest.fixture
def server(ca: CAFiles) -> CertFiles:
    return issue(ca.cert.parent, "coordinator")


@pytest.fixture
def node(ca: CAFiles) -> CertFiles:
    return issue(ca.cert.parent, "node-1", kind="client")


def test_server_tls_client_trusting_ca_gets_reply(server: CertFiles) -> None:
    with serving(load_server_tls(server.cert, server.key)) as port:
        assert call(port, load_client_tls(server.ca)) == b"ping"


def test_mutual_tls_client_with_node_cert_gets_reply(server: CertFiles, node: CertFiles) -> None:
    with serving(load_server_tls(server.cert, server.key, client_ca=server.ca)) as port:
        assert call(port, load_client_tls(node.ca, node.cert, node.key)) == b"ping"


def test_mutual_tls_server_refuses_client_without_cert(server: CertFiles) -> None:
    with serving(load_server_tls(server.cert, server.key, client_ca=server.ca)) as port:
        assert refused(port, load_client_tls(server.ca)) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_server_refuses_client_cert_from_another_ca(server: CertFiles, tmp_path: Path) -> None:
    init_ca(tmp_path / "rogue")
    rogue = issue(tmp_path / "rogue", "node-1", kind="client")
    with serving(load_server_tls(server.cert, server.key, client_ca=server.ca)) as port:
        assert refused(port, load_client_tls(server.ca, rogue.cert, rogue.key)) == grpc.StatusCode.UNAVAILABLE


def test_client_trusting_another_ca_refuses_server(server: CertFiles, tmp_path: Path) -> None:
    other = init_ca(tmp_path / "other")
    with serving(load_server_tls(server.cert, server.key)) as port:
        assert refused(port, load_client_tls(other.cert)) == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("server_name", [None, "localhost"])
def test_default_san_verifies_as_loopback_ip_and_localhost(server: CertFiles, server_name: str | None) -> None:
    with serving(load_server_tls(server.cert, server.key)) as port:
        assert call(port, load_client_tls(server.ca, server_name=server_name)) == b"ping"


def test_client_refuses_server_under_a_name_its_san_lacks(server: CertFiles) -> None:
    with serving(load_server_tls(server.cert, server.key)) as port:
        tls = load_client_tls(server.ca, server_name="elsewhere.example.org")
        assert refused(port, tls) == grpc.StatusCode.UNAVAILABLE


def test_server_cert_for_named_host_verifies_under_that_name(ca: CAFiles) -> None:
    files = issue(ca.cert.parent, "coordinator", hosts=["coord.example.org"])
    with serving(load_server_tls(files.cert, files.key)) as port:
        assert call(port, load_client_tls(files.ca, server_name="coord.example.org")) == b"ping"
