"""The deployment commands: ``coordinator`` and ``node``, the two long-running processes, and ``run`` and ``token``.

``coordinator`` and ``node`` stop cleanly on SIGINT/SIGTERM. ``run`` submits a run config to a
coordinator and follows it to its end; a run that fails exits with the code of the error that
failed it, so a run that could not get its nodes exits with 4 (``QuorumError``) here as in
``fedlearn simulate``. The node's token can come from ``FEDLEARN_NODE_TOKEN``, like the shared
options in :mod:`fedlearn.cli.options`.
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from fedlearn.cli.follow import DEFAULT_RECONNECT_SECONDS, report_end
from fedlearn.cli.follow import follow as follow_run
from fedlearn.cli.logs import (
    LogFormat,
    LogFormatOption,
    LogLevel,
    LogLevelOption,
    configure_logging,
    quiet_grpc,
    trace_grpc_handshakes,
)
from fedlearn.cli.options import DEFAULT_API, DEFAULT_STORE, AdminToken, ApiOption, ReconnectOption, StoreOption
from fedlearn.cli.reporting import command_group
from fedlearn.core.limits import (
    DEFAULT_MAX_CALLS_PER_NODE,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_NODE_UPLOAD_BYTES,
    DEFAULT_UPLOAD_BUFFER_BYTES,
)

app = command_group()
logger = logging.getLogger(__name__)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@app.command()
def coordinator(
    listen: Annotated[str, typer.Option(help="gRPC address nodes connect to.")] = "0.0.0.0:7070",
    http: Annotated[str, typer.Option(help="HOST:PORT of the HTTP API.")] = "127.0.0.1:8080",
    store: StoreOption = DEFAULT_STORE,
    admin_token: AdminToken = "",
    tls_cert: Annotated[Path | None, typer.Option(help="Server certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Server private key (PEM).")] = None,
    tls_client_ca: Annotated[Path | None, typer.Option(help="CA for node certificates: enables mutual TLS.")] = None,
    max_message_bytes: Annotated[
        int, typer.Option(help="Largest model or reply accepted.")
    ] = DEFAULT_MAX_MESSAGE_BYTES,
    heartbeat_timeout: Annotated[float, typer.Option(help="Seconds of silence before a node is offline.")] = 6.0,
    max_request_bytes: Annotated[
        int, typer.Option(min=1, help="Largest HTTP API request body accepted (a run config, an analytics request).")
    ] = DEFAULT_MAX_REQUEST_BYTES,
    allow_learner: Annotated[list[str] | None, typer.Option(help="Allow a module:function learner.")] = None,
    trusted_data: Annotated[
        Path | None, typer.Option(help="The coordinator's own clean datasets ([datasets.NAME]), for FLTrust.")
    ] = None,
    max_calls_per_node: Annotated[
        int, typer.Option(min=1, help="Calls one node may have open at once; more are refused.")
    ] = DEFAULT_MAX_CALLS_PER_NODE,
    upload_buffer_bytes: Annotated[
        int, typer.Option(min=1, help="Bytes of replies being received at once, over all nodes.")
    ] = DEFAULT_UPLOAD_BUFFER_BYTES,
    node_upload_bytes: Annotated[
        int, typer.Option(min=1, help="Each node's share of the upload buffer; larger replies wait for a lane.")
    ] = DEFAULT_NODE_UPLOAD_BYTES,
    log_level: LogLevelOption = LogLevel.info,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Run the coordinator: the gRPC fleet for nodes, the run queue and the HTTP API."""
    trace_grpc_handshakes(log_level)
    from fedlearn.core.errors import ConfigError
    from fedlearn.runtime.coordinator import Coordinator
    from fedlearn.runtime.grpc_fleet import GrpcFleet, serve
    from fedlearn.runtime.grpc_log import capture_core_log
    from fedlearn.runtime.node_config import load_trusted_data
    from fedlearn.runtime.store import open_store
    from fedlearn.runtime.tls import load_server_tls
    from fedlearn.web.api import create_app
    from fedlearn.web.server import api_server

    if not admin_token:
        raise ConfigError("set FEDLEARN_ADMIN_TOKEN or --admin-token; `fedlearn token` prints a fresh one")
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    if tls_client_ca is not None and tls_cert is None:
        raise ConfigError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key too")
    host, _, port = http.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--http must be HOST:PORT; got {http!r}")
    configure_logging(log_level, log_format)
    tls = load_server_tls(tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key else None
    state = open_store(store)
    fleet = GrpcFleet(
        authenticate=state.authenticate,
        max_message_bytes=max_message_bytes,
        heartbeat_timeout=heartbeat_timeout,
        heartbeat_interval=min(2.0, heartbeat_timeout / 3),
        on_node_status=state.mark_node,
        bind_identity=state.bind_identity_key,
        max_calls_per_node=max_calls_per_node,
        upload_buffer_bytes=upload_buffer_bytes,
        node_upload_bytes=node_upload_bytes,
    )
    capture_core_log()  # after every check that can refuse the options: it takes over descriptor 2
    server, bound = serve(fleet, listen, tls)
    trusted = load_trusted_data(trusted_data) if trusted_data is not None else {}
    service = Coordinator(state, fleet, allowed_learners=allow_learner or (), trusted_datasets=trusted)
    service.start()
    logger.info("coordinator: nodes connect to %s (port %d, %s), API on http://%s, store %s",
                listen, bound, "TLS" if tls else "no TLS", http, state.url)  # fmt: skip
    try:
        api = create_app(service, admin_token=admin_token, max_request_bytes=max_request_bytes)
        api_server(api, host=host, port=int(port)).run()
    finally:
        service.close()
        fleet.close()  # sessions end with "coordinator shutting down"; nodes reconnect to the next one
        server.stop(grace=2).wait()
        state.close()


@app.command()
def node(
    coordinator: Annotated[str, typer.Option(help="HOST:PORT of the coordinator's gRPC address.")],
    name: Annotated[str, typer.Option(help="This node's registered name.")],
    config: Annotated[Path, typer.Option(help="Node config (TOML): datasets, learner and policy.")],
    token: Annotated[str, typer.Option(envvar="FEDLEARN_NODE_TOKEN", help="Token from `fedlearn nodes add`.")] = "",
    tls_ca: Annotated[Path | None, typer.Option(help="CA certificate that signed the coordinator's.")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="This node's certificate (mutual TLS).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="This node's private key (mutual TLS).")] = None,
    server_name: Annotated[str | None, typer.Option(help="Name to check the coordinator's certificate for.")] = None,
    max_message_bytes: Annotated[int, typer.Option(help="Largest model or task accepted.")] = DEFAULT_MAX_MESSAGE_BYTES,
    log_level: LogLevelOption = LogLevel.info,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Run a node: connect out to the coordinator and answer its tasks with local data."""
    quiet_grpc(log_level)
    from fedlearn.analytics.handlers import analytics_handlers, audit_fields
    from fedlearn.analytics.node_sources import analytics_data
    from fedlearn.analytics.policy import DisclosurePolicy
    from fedlearn.analytics.pushdown import InDatabase
    from fedlearn.core.errors import ConfigError
    from fedlearn.data.dataset import Dataset
    from fedlearn.registry.node_scoring import audit_fields as scoring_audit_fields
    from fedlearn.registry.node_scoring import scoring_handlers
    from fedlearn.runtime.agent import NodeAgent
    from fedlearn.runtime.node_config import load_node_config
    from fedlearn.runtime.node_runtime import build_node, node_privacy, secure_aggregation_setup
    from fedlearn.runtime.tls import load_client_tls

    if not token:
        raise ConfigError("set FEDLEARN_NODE_TOKEN or --token (from `fedlearn nodes add NAME` on the coordinator)")
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("a node certificate needs both --tls-cert and --tls-key")
    if tls_cert is not None and tls_ca is None:
        raise ConfigError("--tls-cert needs --tls-ca, the CA that signed the coordinator's certificate")
    configure_logging(log_level, log_format)
    node_config = load_node_config(config)
    datasets = node_config.load_datasets(node_config.trained_datasets())  # the others are read at each task
    policy = DisclosurePolicy(**node_config.policy.model_dump(exclude={"audit_log"}))
    privacy = node_privacy(name, node_config, config.parent)  # one budget, charged by training and analytics alike
    analysed = analytics_data(node_config, datasets)  # summarised in their databases where they can be
    analytics = analytics_handlers(
        analysed, policy=policy, budget=privacy, require_dp=privacy.requires_differential_privacy
    )
    scoring = scoring_handlers(node_config, datasets, policy=policy)
    secure = secure_aggregation_setup(name, node_config, config.parent)
    handler = build_node(
        name,
        node_config,
        datasets,
        handlers={**analytics, **scoring, **(secure.handlers if secure else {})},
        describe={**dict.fromkeys(analytics, audit_fields), **dict.fromkeys(scoring, scoring_audit_fields)},
        config_dir=config.parent,
        privacy=privacy,
    )
    tls = load_client_tls(tls_ca, tls_cert, tls_key, server_name) if tls_ca else None
    agent = NodeAgent(handler, coordinator=coordinator, name=name, token=token, tls=tls,
                      max_message_bytes=max_message_bytes,
                      identity_key=secure.identity_key if secure else b"")  # fmt: skip
    rows = ", ".join(f"{k}: {len(v)} rows" if isinstance(v, Dataset) else f"{k}: in its database"
                     if isinstance(v, InDatabase) else f"{k}: read at each task"
                     for k, v in analysed.items())  # fmt: skip
    logger.info("node %s: starting, connecting to %s (%s); datasets %s", name, coordinator,
                "TLS" if tls else "no TLS", rows)  # fmt: skip
    stop = _stop_on_signals()
    agent.run(stop)
    logger.info("node %s: stopped%s", name, " on a signal" if stop.is_set() else "")


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Run config (TOML).")],
    api: ApiOption = DEFAULT_API,
    admin_token: AdminToken = "",
    follow: Annotated[bool, typer.Option(help="Follow progress until the run ends.")] = True,
    reconnect_timeout: ReconnectOption = DEFAULT_RECONNECT_SECONDS,
) -> None:
    """Submit a run to a coordinator and follow it with a progress bar."""
    from fedlearn.config import load_config
    from fedlearn.web.client import CoordinatorClient

    load_config(config)  # fail here, with the file name, before anything is sent
    with CoordinatorClient(api, admin_token=admin_token) as client:
        submitted = client.submit(config.read_text(encoding="utf-8"))
        typer.echo(f"submitted run {submitted.id} ({submitted.name})")
        if not follow:
            return
        ended = follow_run(client, submitted, reconnect_timeout=reconnect_timeout)
    report_end(ended)


@app.command()
def token() -> None:
    """Print a fresh random token, e.g. for FEDLEARN_ADMIN_TOKEN."""
    typer.echo(secrets.token_urlsafe(32))


@app.command()
def identity(
    key_file: Annotated[Path, typer.Argument(help="The node's identity key file; made (mode 0600) if missing.")],
) -> None:
    """Print a node's identity public key, making the key first if needed, for `fedlearn nodes add --identity-key`."""
    from fedlearn.runtime.identity import load_or_create_identity, public_key_hex

    key, created = load_or_create_identity(key_file)
    if created:
        typer.echo(f"made a new identity key in {key_file} (mode 0600); its public key:", err=True)
    typer.echo(public_key_hex(key))
