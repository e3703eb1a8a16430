"""A node set up wrongly (port, TLS on one side only, missing client certificate) says what to fix in one line."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fedlearn.runtime.tls import ClientTLS, ServerTLS
from tests.runtime.deploy.conftest import ROOT, node_toml
from tests.runtime.transport.conftest import AgentThread, Coordinator
from tests.runtime.transport.pki import Pki, make_pki


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


class _Nowhere:
    """An address nothing listens on."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.address = f"127.0.0.1:{probe.getsockname()[1]}"


def _first_reason(start_agent: Callable[..., AgentThread], coordinator: object, caplog: pytest.LogCaptureFixture,
                  tls: ClientTLS | None) -> str:  # fmt: skip
    caplog.clear()
    agent = start_agent(coordinator, "a", tls=tls) if tls else start_agent(coordinator, "a")
    deadline = time.monotonic() + 10
    while not any("reconnecting" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
        time.sleep(0.05)
    agent.halt()
    return next(r.getMessage() for r in caplog.records if "reconnecting" in r.getMessage())


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("nothing listens", "nothing listens at 127.0.0.1:"),
        ("plaintext node, TLS coordinator", "closed the connection: if it uses TLS, pass --tls-ca"),
        ("TLS node, plaintext coordinator", "does not speak TLS: leave out --tls-ca"),
        ("no client certificate, mutual TLS", "requires client certificates (mutual TLS), so pass --tls-cert"),
        ("wrong CA", "is not signed by the CA in --tls-ca"),
    ],
)
def test_each_connection_mistake_gets_one_line_that_says_what_to_fix(
    case: str,
    expected: str,
    pki: Pki,
    start_coordinator: Callable[..., Coordinator],
    start_agent: Callable[..., AgentThread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="fedlearn.runtime.agent")
    server = ServerTLS(cert=pki.server_cert, key=pki.server_key)
    setups: dict[str, tuple[Callable[[], object], ClientTLS | None]] = {
        "nothing listens": (_Nowhere, None),
        "plaintext node, TLS coordinator": (lambda: start_coordinator(tls=server), None),
        "TLS node, plaintext coordinator": (start_coordinator, ClientTLS(ca=pki.ca)),
        "no client certificate, mutual TLS": (
            lambda: start_coordinator(tls=ServerTLS(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca)),
            ClientTLS(ca=pki.ca),
        ),
        "wrong CA": (lambda: start_coordinator(tls=server), ClientTLS(ca=pki.client_cert)),
    }
    make, tls = setups[case]

    reason = _first_reason(start_agent, make(), caplog, tls)

    assert expected in reason
    assert "OPENSSL" not in reason and "\n" not in reason


@pytest.mark.slow
def test_a_node_process_shows_the_hint_and_no_raw_grpc_core_lines(
    pki: Pki, start_coordinator: Callable[..., Coordinator], tmp_path: Path
) -> None:
    coordinator = start_coordinator()  # plaintext, while the node is told to use TLS
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.ca)
    config = tmp_path / "node.toml"
    config.write_text(node_toml(0, 2))
    env = {key: value for key, value in os.environ.items() if key != "GRPC_VERBOSITY"}
    node = subprocess.Popen(
        [sys.executable, "-c", "from fedlearn.cli import main; main()", "node", "--coordinator", coordinator.address,
         "--name", "a", "--config", str(config), "--tls-ca", str(ca)],
        cwd=ROOT, stderr=subprocess.PIPE, text=True, env={**env, "FEDLEARN_NODE_TOKEN": "token-a"},
    )  # fmt: skip
    time.sleep(3)
    node.send_signal(signal.SIGTERM)
    _, stderr = node.communicate(timeout=30)

    assert "does not speak TLS: leave out --tls-ca" in stderr
    assert "OPENSSL" not in stderr and "ssl_transport_security" not in stderr
