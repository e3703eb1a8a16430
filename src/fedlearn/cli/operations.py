"""Operator commands: ``fedlearn nodes`` registers nodes in the store, ``fedlearn runs`` manages a coordinator's runs.

``nodes`` works on the store directly, so it runs on the coordinator's host (or anywhere that
reaches its database); ``runs`` goes through the coordinator's HTTP API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedlearn.cli.follow import DEFAULT_RECONNECT_SECONDS, follow, report_end
from fedlearn.cli.options import (
    DEFAULT_API,
    DEFAULT_STORE,
    AdminToken,
    ApiOption,
    ReconnectOption,
    StoreOption,
    announce_default_store,
)
from fedlearn.cli.progress import privacy_summary
from fedlearn.cli.reporting import command_group
from fedlearn.cli.secrets_files import refuse_to_overwrite, write_secret

nodes = command_group(help="Register, list and revoke nodes (run on the coordinator's host).")
runs = command_group(help="List, inspect, follow, stop and resume runs on a coordinator.")


MaxExamplesOption = Annotated[
    int | None,
    typer.Option(min=1, help="Rows the node holds, as its site declares: a reply claiming more examples is rejected."),
]


TokenFileOption = Annotated[
    Path | None, typer.Option(help="Write the token to this file (mode 0600) instead of printing it.")
]


IdentityKeyOption = Annotated[
    str | None,
    typer.Option(help="The node's Ed25519 public key (64 hex digits, from `fedlearn identity`); default: bound at "
                 "its first connection."),
]  # fmt: skip


@nodes.command("add")
def nodes_add(
    name: str,
    store: StoreOption = DEFAULT_STORE,
    max_examples: MaxExamplesOption = None,
    token_file: TokenFileOption = None,
    identity_key: IdentityKeyOption = None,
) -> None:
    """Register a node and hand out its token, once; only its hash is stored."""
    from fedlearn.runtime.identity import parse_public_key
    from fedlearn.runtime.store import open_store

    if token_file is not None:
        refuse_to_overwrite(token_file, name)
    key = None if identity_key is None else parse_public_key(identity_key, what="--identity-key")
    with open_store(announce_default_store(store)) as state:
        issued = state.add_node(name, max_examples=max_examples, identity_key=key)
    _hand_out(name, "registered", issued, token_file)


@nodes.command("identity")
def nodes_identity(
    name: str,
    store: StoreOption = DEFAULT_STORE,
    key: Annotated[str | None, typer.Option(help="Pin this Ed25519 public key (64 hex digits).")] = None,
    forget: Annotated[bool, typer.Option("--forget", help="Forget the key; the next connection binds one.")] = False,
) -> None:
    """Pin or forget the identity key that signs a node's secure-aggregation keys."""
    from fedlearn.core.errors import ConfigError
    from fedlearn.runtime.identity import parse_public_key
    from fedlearn.runtime.store import open_store

    if (key is None) != forget:
        raise ConfigError("give either --key HEX or --forget")
    pinned = None if key is None else parse_public_key(key, what="--key")
    with open_store(announce_default_store(store)) as state:
        state.set_identity_key(name, pinned)
    typer.echo(f"node {name}: " + ("identity key forgotten" if pinned is None else f"identity key {pinned.hex()}"))


@nodes.command("identities")
def nodes_identities(
    store: StoreOption = DEFAULT_STORE,
    out: Annotated[Path | None, typer.Option(help="Write the registry to this file instead of printing it.")] = None,
) -> None:
    """The registered identity keys as a registry file, to give every node as [secure_aggregation] peers."""
    from fedlearn.core.errors import ConfigError
    from fedlearn.runtime.identity import registry_toml
    from fedlearn.runtime.store import open_store

    with open_store(announce_default_store(store)) as state:
        keys = state.identity_keys()
    if not keys:
        raise ConfigError("no node has an identity key yet: nodes bind one when they first connect")
    text = registry_toml(keys)
    if out is None:
        typer.echo(text, nl=False)
        return
    out.write_text(text)
    typer.echo(f"{len(keys)} identity keys written to {out}")


@nodes.command("declare")
def nodes_declare(
    name: str,
    store: StoreOption = DEFAULT_STORE,
    max_examples: MaxExamplesOption = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the declared row count.")] = False,
) -> None:
    """Declare how many rows a node holds (from the next run on), or clear the declaration."""
    from fedlearn.core.errors import ConfigError
    from fedlearn.runtime.store import open_store

    if (max_examples is None) != clear:
        raise ConfigError("give either --max-examples N or --clear")
    with open_store(announce_default_store(store)) as state:
        state.declare_rows(name, max_examples)
    typer.echo(f"node {name}: " + ("no declared row count" if clear else f"declared {max_examples} rows"))


@nodes.command("rotate")
def nodes_rotate(name: str, store: StoreOption = DEFAULT_STORE, token_file: TokenFileOption = None) -> None:
    """Issue a new token for a node; the old one stops working."""
    from fedlearn.runtime.store import open_store

    with open_store(announce_default_store(store)) as state:
        issued = state.rotate_token(name)
    _hand_out(name, "has a new token", issued, token_file)


def _hand_out(name: str, what: str, token: str, token_file: Path | None) -> None:
    """Print the token, or write it to ``token_file`` readable by its owner only."""
    if token_file is None:
        typer.echo(f"node {name} {what}. Its token, shown only now:\n{token}")
        return
    write_secret(token_file, token + "\n")
    typer.echo(f"node {name} {what}; its token is in {token_file} (mode 0600)")


@nodes.command("revoke")
def nodes_revoke(name: str, store: StoreOption = DEFAULT_STORE) -> None:
    """Revoke a node: its token is refused from now on."""
    from fedlearn.runtime.store import open_store

    with open_store(announce_default_store(store)) as state:
        state.revoke_node(name)
    typer.echo(f"node {name} revoked")


@nodes.command("list")
def nodes_list(store: StoreOption = DEFAULT_STORE) -> None:
    """Registered nodes with their status and when they were last seen."""
    from rich.console import Console
    from rich.table import Table

    from fedlearn.runtime.store import open_store

    with open_store(announce_default_store(store)) as state:
        records = state.list_nodes()
    table = Table("name", "status", "last seen", "registered", "declared rows", "identity key")
    for n in records:
        status = "revoked" if n.revoked else n.status
        table.add_row(n.name, status, n.last_seen.isoformat(timespec="seconds") if n.last_seen else "never",
                      n.created_at.isoformat(timespec="seconds"),
                      "-" if n.max_examples is None else str(n.max_examples),
                      "-" if n.identity_key is None else n.identity_key[:12])  # fmt: skip
    Console().print(table)


@runs.command("list")
def runs_list(api: ApiOption = DEFAULT_API, admin_token: AdminToken = "") -> None:
    """All runs on the coordinator, with the ε each has spent under differential privacy."""
    from rich.console import Console
    from rich.table import Column, Table

    from fedlearn.web.client import CoordinatorClient

    with CoordinatorClient(api, admin_token=admin_token) as client:
        records = client.runs()
    table = Table(
        Column("id", no_wrap=True, min_width=32), "name", "status", "rounds", "ε",
        Column("message", no_wrap=True, overflow="ellipsis", max_width=60),  # one row a run, however long
    )  # fmt: skip
    for r in records:
        spent = "-" if r.epsilon is None else f"{r.epsilon:.3g}"
        table.add_row(r.id, r.name, r.status, f"{r.rounds_done}/{r.rounds_total}", spent, r.message)
    Console().print(table)


@runs.command("show")
def runs_show(
    run_id: str,
    api: ApiOption = DEFAULT_API,
    admin_token: AdminToken = "",
    model: Annotated[Path | None, typer.Option(help="Save the run's latest model (safetensors) here.")] = None,
) -> None:
    """A run's status, privacy spent and per-round history; optionally download its model."""
    from fedlearn.web.client import CoordinatorClient

    with CoordinatorClient(api, admin_token=admin_token) as client:
        current = client.run(run_id)
        if model is not None:
            model.write_bytes(client.model(run_id))
    said = current.message if current.status != "completed" else ""  # a completed run's message is its rounds
    typer.echo(f"run {current.id} ({current.name}): {current.status}, {current.rounds_done}/{current.rounds_total} "
               f"rounds" + (f": {said}" if said else ""))  # fmt: skip
    if current.privacy is not None:
        typer.echo(privacy_summary(epsilon=current.privacy.epsilon, delta=current.privacy.delta,
                                   budget=current.privacy.budget))  # fmt: skip
    for record in current.history:
        metrics = {**record.fit_metrics, **record.federated_metrics}
        shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        if record.epsilon is not None:
            shown += f" ε={record.epsilon:.2f}"
        typer.echo(f"  round {record.round}: {record.replies}/{record.sampled} replies "
                   f"in {record.duration_s:.2f} s {shown}".rstrip())  # fmt: skip
    if model is not None:
        typer.echo(f"model written to {model}")


@runs.command("watch")
def runs_watch(
    run_id: str,
    api: ApiOption = DEFAULT_API,
    admin_token: AdminToken = "",
    reconnect_timeout: ReconnectOption = DEFAULT_RECONNECT_SECONDS,
) -> None:
    """Follow a run to its end, as `fedlearn run` does: re-attach after a disconnect or from another shell."""
    from fedlearn.web.client import CoordinatorClient

    with CoordinatorClient(api, admin_token=admin_token) as client:
        ended = follow(client, client.run(run_id), reconnect_timeout=reconnect_timeout)
    report_end(ended)


@runs.command("resume")
def runs_resume(
    run_id: str,
    api: ApiOption = DEFAULT_API,
    admin_token: AdminToken = "",
    watch: Annotated[bool, typer.Option(help="Follow the run to its end.")] = True,
    reconnect_timeout: ReconnectOption = DEFAULT_RECONNECT_SECONDS,
) -> None:
    """Queue a failed run again: it resumes from its last checkpoint."""
    from fedlearn.web.client import CoordinatorClient

    with CoordinatorClient(api, admin_token=admin_token) as client:
        queued = client.resume(run_id)
        typer.echo(f"run {queued.id}: {queued.message}")
        if not watch:
            return
        ended = follow(client, queued, reconnect_timeout=reconnect_timeout)
    report_end(ended)


@runs.command("stop")
def runs_stop(run_id: str, api: ApiOption = DEFAULT_API, admin_token: AdminToken = "") -> None:
    """Stop a run after its current round (a queued run stops at once)."""
    from fedlearn.web.client import CoordinatorClient

    with CoordinatorClient(api, admin_token=admin_token) as client:
        current = client.stop(run_id)
    typer.echo(f"run {current.id}: {current.status}" + (" (stop requested)" if current.stop_requested else ""))
