"""A throwaway certificate authority for TLS tests, made with fedlearn's own ``certs`` tooling."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from fedlearn.runtime.certs import init_ca, issue


@dataclass(frozen=True)
class Pki:
    ca: bytes
    server_cert: bytes
    server_key: bytes
    client_cert: bytes  # node "a"'s
    client_key: bytes
    other_cert: bytes  # node "b"'s
    other_key: bytes


def make_pki() -> Pki:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "pki"
        ca = init_ca(directory, common_name="fedlearn test CA")
        server = issue(directory, "coordinator", kind="server", hosts=["localhost", "127.0.0.1"])
        client = issue(directory, "a", kind="client")
        other = issue(directory, "b", kind="client")
        return Pki(
            ca=ca.cert.read_bytes(),
            server_cert=server.cert.read_bytes(),
            server_key=server.key.read_bytes(),
            client_cert=client.cert.read_bytes(),
            client_key=client.key.read_bytes(),
            other_cert=other.cert.read_bytes(),
            other_key=other.key.read_bytes(),
        )
