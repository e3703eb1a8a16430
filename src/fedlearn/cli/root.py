"""The ``fedlearn`` command: every command group mounted on one app, ``--version``, and the entry point.

Each group lives in a module of its own; this one only puts them together. Heavy imports happen
inside the commands, so ``fedlearn --help`` and ``fedlearn --version`` stay instant.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fedlearn.cli import analytics, analytics_federation, certs, deployment, models, operations, robustness, simulate
from fedlearn.cli.models_remote import register as register_remote_models
from fedlearn.cli.reporting import command_group
from fedlearn.cli.score import app as score_app
from fedlearn.cli.serve import app as serve_app

app = command_group(help="Federated learning and exact federated analytics over data that never moves.")
app.add_typer(simulate.app)
app.add_typer(robustness.app)
app.add_typer(deployment.app)
app.add_typer(operations.nodes, name="nodes")
app.add_typer(operations.runs, name="runs")
app.add_typer(models.app, name="models")
register_remote_models(models.app)
app.add_typer(analytics.app, name="analytics")
analytics.app.add_typer(analytics_federation.app, name="federation")
app.add_typer(certs.app, name="certs")
app.add_typer(score_app)
app.add_typer(serve_app)


def _print_version(requested: bool) -> None:
    if requested:
        version()
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version)
    ] = False,
) -> None:
    """``fedlearn``'s own options, given before any command."""


@app.command()
def version() -> None:
    """Print the fedlearn version."""
    from fedlearn import __version__

    typer.echo(__version__)


def main() -> None:
    """Console entry point (``fedlearn``): run the app; errors are reported by its groups, see ``reporting``."""
    app(prog_name="fedlearn")
