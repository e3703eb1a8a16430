"""``fedlearn serve``: answer predictions over HTTP from a model version, with MLflow's scoring endpoints.

``fedlearn serve FILE`` serves an exported package file, and serves it anew when the file is
written anew. ``fedlearn serve NAME@ALIAS`` serves the version the alias points at on the coordinator,
and moves to the new version when the alias moves; either way the new version is loaded off the
request path, and no request is dropped (see :mod:`fedlearn.registry.serving`). The first version
must load, or the command exits with the reason; a later one that fails to load is logged and
the old one keeps serving. The server stops cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fedlearn.cli.logs import LogFormat, LogFormatOption, LogLevel, LogLevelOption, configure_logging
from fedlearn.cli.options import DEFAULT_API, AdminToken, ApiOption
from fedlearn.cli.reporting import command_group
from fedlearn.core.errors import ConfigError, NotFoundError
from fedlearn.core.limits import DEFAULT_MAX_INVOCATION_BYTES, DEFAULT_MAX_INVOCATION_ROWS

if TYPE_CHECKING:
    from fedlearn.registry.serving import FileSource
    from fedlearn.web.registry_source import RegistrySource

app = command_group()
logger = logging.getLogger(__name__)

DEFAULT_POLL = 10.0  # registry.serving.DEFAULT_POLL_SECONDS, repeated so `--help` does not import the registry


@app.command()
def serve(
    model: Annotated[str, typer.Argument(help="An exported package file, or NAME@ALIAS on the coordinator.")],
    http: Annotated[str, typer.Option(help="HOST:PORT to answer on.")] = "127.0.0.1:5000",
    coordinator: ApiOption = DEFAULT_API,
    admin_token: AdminToken = "",
    poll: Annotated[
        float, typer.Option(min=0.1, help="Seconds between checks for a new version (alias moved, file rewritten).")
    ] = DEFAULT_POLL,
    bearer_token: Annotated[
        str,
        typer.Option(
            envvar="FEDLEARN_SERVE_TOKEN", show_default=False, help="Require 'Authorization: Bearer <this>' to predict."
        ),
    ] = "",
    max_body_bytes: Annotated[
        int, typer.Option(min=1, help="Largest request body read, in bytes.")
    ] = DEFAULT_MAX_INVOCATION_BYTES,
    max_rows: Annotated[int, typer.Option(min=1, help="Most rows one request may hold.")] = DEFAULT_MAX_INVOCATION_ROWS,
    trust_code: Annotated[
        bool, typer.Option("--trust-code", help="Allow a package of a user learner to import its code.")
    ] = False,
    log_level: LogLevelOption = LogLevel.info,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Serve a model version over HTTP: POST /invocations, GET /health and GET /version, as MLflow does."""
    from fedlearn import __version__
    from fedlearn.registry.serving import AliasWatcher, ServedModel
    from fedlearn.web.model_server import create_model_app
    from fedlearn.web.server import api_server

    host, _, port = http.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--http must be HOST:PORT; got {http!r}")
    configure_logging(log_level, log_format)
    with ExitStack() as resources:
        source = _source(model, resources, coordinator=coordinator, admin_token=admin_token, trust_code=trust_code)
        served = ServedModel()
        watcher = AliasWatcher(served, resolve=source.resolve, load=source.load, poll_seconds=poll)
        watcher.check()  # the first version must load: there is nothing to fall back on
        app = create_model_app(
            served,
            fedlearn_version=__version__,
            bearer_token=bearer_token or None,
            max_body_bytes=max_body_bytes,
            max_rows=max_rows,
        )
        current = served.current
        logger.info("serving %s (%s) on http://%s", model, current.version if current else "-", http)
        watcher.start()
        try:
            api_server(app, host=host, port=int(port)).run()
        finally:
            watcher.stop()


def _source(
    model: str, resources: ExitStack, *, coordinator: str, admin_token: str, trust_code: bool
) -> FileSource | RegistrySource:
    """Where versions of ``model`` come from: the coordinator's registry for ``NAME@...``, else a package file."""
    from fedlearn.registry.loading import load_model_file
    from fedlearn.registry.serving import FileSource
    from fedlearn.web.client import CoordinatorClient
    from fedlearn.web.registry_source import RegistrySource

    if "@" in model:
        client = resources.enter_context(CoordinatorClient(coordinator, admin_token=admin_token))
        return RegistrySource(client, model, trust_code=trust_code)
    path = Path(model)
    if not path.is_file():
        raise NotFoundError(f"no model package file {model!r}; to serve a registered model, write NAME@ALIAS")
    return FileSource(path, read=partial(load_model_file, trust_code=trust_code))
