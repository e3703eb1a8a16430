"""The ``fedlearn`` command: every command group mounted on one app, ``--version``, and the entry point.

Each group lives in a module of its own; this one only puts them together. Heavy imports happen
inside the commands, so ``fedlearn --help`` and ``fedlearn --version`` stay instant.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fedlearn.cli import analytics, certs, deployment, models_remote, operations, robustness, simulate
from fedlearn.cli.reporting import command_group

app = command_group(help="Federated learning and exact federated analytics over data that never moves.")
app.add_typer(simulate.app)
app.add_typer(robustness.app)
app.add_typer(deployment.app)
app.add_typer(operations.nodes, name="nodes")
app.add_typer(operations.runs, name="runs")
app.add_typer(models_remote.app, name="models")  # merges into the registry's `fedlearn models` group
app.add_typer(analytics.app, name="analytics")
app.add_typer(certs.app, name="certs")


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
