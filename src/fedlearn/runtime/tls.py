"""TLS settings for the gRPC link between coordinator and nodes.

Both ends take PEM bytes, loaded once from files. A server with ``client_ca`` set demands client
certificates signed by that CA (mutual TLS); a client with ``cert``/``key`` presents one. Tokens
still identify each node on top of TLS, so a stolen certificate alone is not enough; and under
mutual TLS a certificate serves only the node whose name it carries, so a stolen token alone is
not enough either (the check is in ``transport.service``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from fedlearn.core.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerTLS:
    cert: bytes
    key: bytes
    client_ca: bytes | None = None

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.client_ca, require_client_auth=self.mutual
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientTLS:
    ca: bytes
    cert: bytes | None = None
    key: bytes | None = None
    server_name: str | None = None  # override when dialling an address the certificate does not name

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ConfigError("a client certificate needs both `cert` and `key`; got only one")

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )

    def channel_options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None


def load_server_tls(cert: str | Path, key: str | Path, client_ca: str | Path | None = None) -> ServerTLS:
    return ServerTLS(
        cert=_read(cert, "certificate"),
        key=_read(key, "private key"),
        client_ca=_read(client_ca, "client CA certificate") if client_ca else None,
    )


def load_client_tls(
    ca: str | Path, cert: str | Path | None = None, key: str | Path | None = None, server_name: str | None = None
) -> ClientTLS:
    return ClientTLS(
        ca=_read(ca, "CA certificate"),
        cert=_read(cert, "certificate") if cert else None,
        key=_read(key, "private key") if key else None,
        server_name=server_name,
    )
