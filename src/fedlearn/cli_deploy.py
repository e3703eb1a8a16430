"""The deployment commands: ``coordinator``, ``node``, ``run``, ``runs``, ``nodes``, ``token``, ``analytics remote``.

``coordinator`` and ``node`` are long-running processes that stop cleanly on SIGINT/SIGTERM;
the rest are short operator commands. Settings that are secrets or differ per host can come
from the environment (``FEDLEARN_ADMIN_TOKEN``, ``FEDLEARN_NODE_TOKEN``, ``FEDLEARN_STORE``,
``FEDLEARN_COORDINATOR``) so they stay out of shell history.
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_STORE = "sqlite:///fedlearn.db"
DEFAULT_API = "http://127.0.0.1:8080"

StoreOption = Annotated[str, typer.Option("--store", envvar="FEDLEARN_STORE", help="Store URL or SQLite path.")]
ApiOption = Annotated[
    str, typer.Option("--coordinator", envvar="FEDLEARN_COORDINATOR", help="The coordinator's HTTP API URL.")
]
AdminToken = Annotated[
    str, typer.Option("--admin-token", envvar="FEDLEARN_ADMIN_TOKEN", help="The admin token.", show_default=False)
]

nodes_app = typer.Typer(help="Register, list and revoke nodes (run on the coordinator's host).", no_args_is_help=True)
runs_app = typer.Typer(help="List, inspect and stop runs on a coordinator.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command()(coordinator)
    app.command()(node)
    app.command()(run)
    app.command()(token)
    app.add_typer(nodes_app, name="nodes")
    app.add_typer(runs_app, name="runs")


def register_analytics(analytics: typer.Typer) -> None:
    """Add ``remote`` to ``fedlearn analytics``; it is defined here because it needs the HTTP client."""
    analytics.command("remote")(analytics_remote)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def coordinator(
    listen: Annotated[str, typer.Option(help="gRPC address nodes connect to.")] = "0.0.0.0:7070",
    http: Annotated[str, typer.Option(help="HOST:PORT of the HTTP API.")] = "127.0.0.1:8080",
    store: StoreOption = DEFAULT_STORE,
    admin_token: AdminToken = "",
    tls_cert: Annotated[Path | None, typer.Option(help="Server certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Server private key (PEM).")] = None,
    tls_client_ca: Annotated[Path | None, typer.Option(help="CA for node certificates: enables mutual TLS.")] = None,
    max_message_bytes: Annotated[int, typer.Option(help="Largest model or reply accepted.")] = 2**33,
    heartbeat_timeout: Annotated[float, typer.Option(help="Seconds of silence before a node is offline.")] = 6.0,
    allow_learner: Annotated[list[str] | None, typer.Option(help="Allow a module:function learner.")] = None,
) -> None:
    """Run the coordinator: the gRPC fleet for nodes, the run queue and the HTTP API."""
    import uvicorn

    from fedlearn.core.errors import ConfigError
    from fedlearn.runtime.coordinator import Coordinator
    from fedlearn.runtime.grpc_fleet import GrpcFleet, serve
    from fedlearn.runtime.store import open_store
    from fedlearn.runtime.tls import load_server_tls
    from fedlearn.web.api import create_app

    if not admin_token:
        raise ConfigError("set FEDLEARN_ADMIN_TOKEN or --admin-token; `fedlearn token` prints a fresh one")
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    if tls_client_ca is not None and tls_cert is None:
        raise ConfigError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key too")
    host, _, port = http.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--http must be HOST:PORT; got {http!r}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tls = load_server_tls(tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key else None
    state = open_store(store)
    fleet = GrpcFleet(
        authenticate=state.authenticate,
        max_message_bytes=max_message_bytes,
        heartbeat_timeout=heartbeat_timeout,
        heartbeat_interval=min(2.0, heartbeat_timeout / 3),
        on_node_status=state.mark_node,
    )
    server, bound = serve(fleet, listen, tls)
    service = Coordinator(state, fleet, allowed_learners=allow_learner or ())
    service.start()
    typer.echo(f"coordinator: nodes connect to {listen} (port {bound}, {'TLS' if tls else 'no TLS'}), "
               f"API on http://{http}, store {state.url}", err=True)  # fmt: skip
    try:
        uvicorn.Server(uvicorn.Config(create_app(service, admin_token=admin_token), host=host, port=int(port),
                                      log_level="warning")).run()  # fmt: skip
    finally:
        service.close()
        fleet.close()  # sessions end with "coordinator shutting down"; nodes reconnect to the next one
        server.stop(grace=2).wait()
        state.close()


def node(
    coordinator: Annotated[str, typer.Option(help="HOST:PORT of the coordinator's gRPC address.")],
    name: Annotated[str, typer.Option(help="This node's registered name.")],
    config: Annotated[Path, typer.Option(help="Node config (TOML): datasets and learner.")],
    token: Annotated[str, typer.Option(envvar="FEDLEARN_NODE_TOKEN", help="Token from `fedlearn nodes add`.")] = "",
    tls_ca: Annotated[Path | None, typer.Option(help="CA certificate that signed the coordinator's.")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="This node's certificate (mutual TLS).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="This node's private key (mutual TLS).")] = None,
    server_name: Annotated[str | None, typer.Option(help="Name to check the coordinator's certificate for.")] = None,
    max_message_bytes: Annotated[int, typer.Option(help="Largest model or task accepted.")] = 2**33,
) -> None:
    """Run a node: connect out to the coordinator and answer its tasks with local data."""
    from fedlearn.analytics.handlers import analytics_handlers
    from fedlearn.core.errors import ConfigError
    from fedlearn.runtime.agent import NodeAgent
    from fedlearn.runtime.node_config import load_node_config
    from fedlearn.runtime.node_runtime import build_node
    from fedlearn.runtime.tls import load_client_tls

    if not token:
        raise ConfigError("set FEDLEARN_NODE_TOKEN or --token (from `fedlearn nodes add NAME` on the coordinator)")
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("a node certificate needs both --tls-cert and --tls-key")
    if tls_cert is not None and tls_ca is None:
        raise ConfigError("--tls-cert needs --tls-ca, the CA that signed the coordinator's certificate")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    node_config = load_node_config(config)
    datasets = node_config.load_datasets()
    handler = build_node(
        name, node_config, datasets, handlers=analytics_handlers(datasets, min_rows=node_config.node.min_rows)
    )
    tls = load_client_tls(tls_ca, tls_cert, tls_key, server_name) if tls_ca else None
    agent = NodeAgent(handler, coordinator=coordinator, name=name, token=token, tls=tls,
                      max_message_bytes=max_message_bytes)  # fmt: skip
    rows = ", ".join(f"{k}: {len(v)} rows" for k, v in datasets.items())
    typer.echo(f"node {name}: connecting to {coordinator} ({'TLS' if tls else 'no TLS'}); datasets {rows}", err=True)
    agent.run(_stop_on_signals())


def run(
    config: Annotated[Path, typer.Argument(help="Run config (TOML).")],
    api: ApiOption = DEFAULT_API,
    admin_token: AdminToken = "",
    follow: Annotated[bool, typer.Option(help="Follow progress until the run ends.")] = True,
) -> None:
    """Submit a run to a coordinator and follow it with a progress bar."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from fedlearn.config import load_config
    from fedlearn.web.client import CoordinatorClient

    load_config(config)  # fail here, with the file name, before anything is sent
    with CoordinatorClient(api, admin_token=admin_token) as client:
        submitted = client.submit(config.read_text(encoding="utf-8"))
        typer.echo(f"submitted run {submitted.id} ({submitted.name})")
        if not follow:
            return
        columns = (
            TextColumn("round"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
        )
        with Progress(*columns, console=Console(stderr=True)) as progress:
            bar = progress.add_task(submitted.status, total=submitted.rounds_total)
            while True:
                current = client.run(submitted.id)
                last = current.history[-1] if current.history else None
                metrics = (last.federated_metrics or last.fit_metrics) if last else {}
                shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k in ("loss", "accuracy"))
                progress.update(bar, completed=current.rounds_done, description=f"{current.status} {shown}")
                if current.status in ("completed", "failed", "stopped"):
                    break
                time.sleep(1.0)
    typer.echo(f"run {current.id}: {current.status} {current.message}".rstrip())
    if current.status != "completed":
        raise typer.Exit(1)


def token() -> None:
    """Print a fresh random token, e.g. for FEDLEARN_ADMIN_TOKEN."""
    typer.echo(secrets.token_urlsafe(32))


@nodes_app.command("add")
def nodes_add(name: str, store: StoreOption = DEFAULT_STORE) -> None:
    """Register a node and print its token (shown once; only its hash is stored)."""
    from fedlearn.runtime.store import open_store

    with open_store(store) as state:
        issued = state.add_node(name)
    typer.echo(f"node {name} registered. Its token, shown only now:\n{issued}")


@nodes_app.command("rotate")
def nodes_rotate(name: str, store: StoreOption = DEFAULT_STORE) -> None:
    """Issue a new token for a node; the old one stops working."""
    from fedlearn.runtime.store import open_store

    with open_store(store) as state:
        issued = state.rotate_token(name)
    typer.echo(f"node {name} has a new token, shown only now:\n{issued}")


@nodes_app.command("revoke")
def nodes_revoke(name: str, store: StoreOption = DEFAULT_STORE) -> None:
    """Revoke a node: its token is refused from now on."""
    from fedlearn.runtime.store import open_store

    with open_store(store) as state:
        state.revoke_node(name)
    typer.echo(f"node {name} revoked")


@nodes_app.command("list")
def nodes_list(store: StoreOption = DEFAULT_STORE) -> None:
    """Registered nodes with their status and when they were last seen."""
    from rich.console import Console
    from rich.table import Table

    from fedlearn.runtime.store import open_store

    with open_store(store) as state:
        records = state.list_nodes()
    table = Table("name", "status", "last seen", "registered")
    for n in records:
        status = "revoked" if n.revoked else n.status
        table.add_row(n.name, status, n.last_seen.isoformat(timespec="seconds") if n.last_seen else "never",
                      n.created_at.isoformat(timespec="seconds"))  # fmt: skip
    Console().print(table)


@runs_app.command("list")
def runs_list(api: ApiOption = DEFAULT_API, admin_token: AdminToken = "") -> None:
    """All runs on the coordinator."""
    from rich.console import Console
    from rich.table import Column, Table

    from fedlearn.web.client import CoordinatorClient

    with CoordinatorClient(api, admin_token=admin_token) as client:
        records = client.runs()
    table = Table(Column("id", no_wrap=True, min_width=32), "name", "status", "rounds", "message")
    for r in records:
        table.add_row(r.id, r.name, r.status, f"{r.rounds_done}/{r.rounds_total}", r.message)
    Console().print(table)


@runs_app.command("show")
def runs_show(
    run_id: str,
    api: ApiOption = DEFAULT_API,
    admin_token: AdminToken = "",
    model: Annotated[Path | None, typer.Option(help="Save the run's latest model (safetensors) here.")] = None,
) -> None:
    """A run's status and per-round history; optionally download its model."""
    from fedlearn.web.client import CoordinatorClient

    with CoordinatorClient(api, admin_token=admin_token) as client:
        current = client.run(run_id)
        if model is not None:
            model.write_bytes(client.model(run_id))
    typer.echo(f"run {current.id} ({current.name}): {current.status}, "
               f"{current.rounds_done}/{current.rounds_total} rounds {current.message}".rstrip())  # fmt: skip
    for record in current.history:
        metrics = {**record.fit_metrics, **record.federated_metrics}
        shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        typer.echo(f"  round {record.round}: {record.replies}/{record.sampled} replies "
                   f"in {record.duration_s:.2f} s {shown}")  # fmt: skip
    if model is not None:
        typer.echo(f"model written to {model}")


@runs_app.command("stop")
def runs_stop(run_id: str, api: ApiOption = DEFAULT_API, admin_token: AdminToken = "") -> None:
    """Stop a run after its current round (a queued run stops at once)."""
    from fedlearn.web.client import CoordinatorClient

    with CoordinatorClient(api, admin_token=admin_token) as client:
        current = client.stop(run_id)
    typer.echo(f"run {current.id}: {current.status}" + (" (stop requested)" if current.stop_requested else ""))


def analytics_remote(
    columns: Annotated[str, typer.Option(help="Feature columns, comma-separated.")],
    member: Annotated[
        list[str], typer.Option(help="NODE=DATASET: a connected node and the dataset it should summarise; repeat.")
    ],
    model: Annotated[str, typer.Option(help="linear, ridge, pca, gnb, lda, qda, logistic, covariance or describe.")],
    target: Annotated[str | None, typer.Option(help="Target column, if any.")] = None,
    task: Annotated[str, typer.Option(help="'regression', or 'classification' for per-class statistics.")] = (
        "regression"
    ),
    alpha: Annotated[float, typer.Option(help="Ridge penalty.")] = 1.0,
    intercept: Annotated[bool, typer.Option(help="Fit an intercept (linear, ridge, logistic).")] = True,
    n_components: Annotated[int | None, typer.Option(help="PCA components to keep.")] = None,
    c: Annotated[float, typer.Option("--C", help="Logistic inverse regularisation strength.")] = 1.0,
    timeout: Annotated[float, typer.Option(help="Seconds each node has to answer each task.")] = 60.0,
    wait: Annotated[float, typer.Option(help="Seconds to wait for a training run to free the nodes.")] = 10.0,
    out: Annotated[Path | None, typer.Option(help="Write the fitted arrays to this safetensors file.")] = None,
    api: ApiOption = DEFAULT_API,
    admin_token: AdminToken = "",
) -> None:
    """Fit a model on datasets of a coordinator's nodes: exact, and nodes share summaries, never rows."""
    from fedlearn.analytics.cli import print_result, save_arrays
    from fedlearn.core.errors import ConfigError
    from fedlearn.web.client import CoordinatorClient

    members: dict[str, str] = {}
    for text in member:
        node_name, _, dataset = (part.strip() for part in text.partition("="))
        if not node_name or not dataset:
            raise ConfigError(f"`--member` must look like NODE=DATASET; got {text!r}")
        if node_name in members:
            raise ConfigError(f"`--member` names node {node_name!r} twice; give each node one dataset")
        members[node_name] = dataset
    feature_columns = [c.strip() for c in columns.split(",") if c.strip()]
    options = {"alpha": alpha, "fit_intercept": intercept, "n_components": n_components, "C": c}
    with CoordinatorClient(api, admin_token=admin_token) as client:
        result = client.analytics(columns=feature_columns, members=members, model=model, target=target, task=task,
                                  options=options, timeout=timeout, wait=wait)  # fmt: skip
    arrays = print_result(result)
    if out is not None:
        save_arrays(out, model, arrays, [*feature_columns, *([target] if target else [])])
        typer.echo(f"wrote {out}")
