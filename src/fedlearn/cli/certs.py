"""``fedlearn certs``: a CA and certificates for one deployment, and the flags that use them.

::

    fedlearn certs init certs/                                    # once, on a trusted machine
    fedlearn certs issue certs/ coordinator --host coord.example.org --host 10.0.0.5
    fedlearn certs issue certs/ clinic-a --client                 # one per node, for mutual TLS

Each command prints the files it wrote and the coordinator or node flags to pass next, because
the usual failure is not a missing file but the right file passed to the wrong flag. Errors are
raised as :class:`~fedlearn.core.errors.ConfigError` and reported, like every command's, as one
line and exit code 2. The work itself is :mod:`fedlearn.runtime.certs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedlearn.cli.reporting import command_group

app = command_group(help="Make a CA and TLS certificates for a coordinator and its nodes.")


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Directory for ca.pem and ca.key; created if missing.")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing CA in DIRECTORY.")] = False,
    days: Annotated[int, typer.Option(help="Days the CA stays valid.")] = 3650,
    common_name: Annotated[str, typer.Option(help="Common name of the CA certificate.")] = "fedlearn CA",
) -> None:
    """Create the certificate authority that signs every certificate of this deployment."""
    from fedlearn.runtime.certs import init_ca

    files = init_ca(directory, common_name=common_name, days=days, force=force)
    typer.echo(f"wrote {files.cert} (CA certificate, valid until {files.not_after:%Y-%m-%d})")
    typer.echo(f"wrote {files.key} (CA private key, mode 0600: keep it here; only {files.cert.name} travels)")
    if force:
        typer.echo("the old CA is gone: re-issue every certificate it signed")
    typer.echo("next:")
    typer.echo(f"  fedlearn certs issue {directory} coordinator --host <address nodes dial>")
    typer.echo(f"  fedlearn certs issue {directory} <node name> --client   # one per node, for mutual TLS")


@app.command()
def issue(
    directory: Annotated[Path, typer.Argument(help="Directory holding the CA from `fedlearn certs init`.")],
    name: Annotated[str, typer.Argument(help="Certificate name: the coordinator's, or the node's for --client.")],
    *,
    server: Annotated[
        bool, typer.Option("--server/--client", help="A coordinator (server) or a node (client) certificate.")
    ] = True,
    host: Annotated[
        list[str] | None,
        typer.Option(help="DNS name or IP address nodes dial; repeat for several. Default: localhost, 127.0.0.1."),
    ] = None,
    days: Annotated[int, typer.Option(help="Days the certificate stays valid (never past the CA).")] = 825,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing certificate of this name.")] = False,
) -> None:
    """Issue a certificate and key signed by the CA in DIRECTORY."""
    from fedlearn.runtime.certs import issue as issue_certificate

    files = issue_certificate(
        directory, name, hosts=host or (), kind="server" if server else "client", days=days, force=force
    )
    until = f"valid until {files.not_after:%Y-%m-%d}"
    if files.kind == "server":
        typer.echo(f"wrote {files.cert} (server certificate for {', '.join(files.hosts)}; {until})")
    else:
        typer.echo(f"wrote {files.cert} (client certificate for node {files.name}; {until})")
    typer.echo(f"wrote {files.key} (private key, mode 0600)")
    typer.echo("next:")
    if files.kind == "server":
        typer.echo(f"  coordinator: --tls-cert {files.cert} --tls-key {files.key}")
        typer.echo(f"               add --tls-client-ca {files.ca} to require node certificates (mutual TLS)")
        typer.echo(f"  each node:   --tls-ca {files.ca}")
    else:
        typer.echo(f"  node {files.name}: --tls-ca {files.ca} --tls-cert {files.cert} --tls-key {files.key}")
        typer.echo(f"  coordinator: --tls-client-ca {files.ca}")
