"""The ``fedlearn`` command.

Every subcommand reports a :class:`~fedlearn.core.errors.FedlearnError` as one line on stderr
and exits with the error's code; set ``FEDLEARN_DEBUG=1`` to see the traceback instead.
Heavy imports happen inside commands so ``fedlearn --help`` stays instant.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fedlearn.core.errors import FedlearnError

app = typer.Typer(
    name="fedlearn",
    help="Federated learning and exact federated analytics over data that never moves.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)


@app.command()
def simulate(
    config: Annotated[Path, typer.Argument(help="Run config (TOML); see examples/.")],
    rounds: Annotated[int | None, typer.Option(help="Override [run] rounds.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override [run] seed.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write history, model and plot to this directory.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar; print only the result.")] = False,
) -> None:
    """Run a federated training simulation on this machine."""
    from fedlearn.config import load_config
    from fedlearn.reports import write_run_outputs
    from fedlearn.simulation.from_config import plan_simulation
    from fedlearn.simulation.progress import RoundProgress
    from fedlearn.simulation.run import simulate as run_simulation

    overrides = {k: v for k, v in {"run.rounds": rounds, "run.seed": seed}.items() if v is not None}
    cfg = load_config(config, **overrides)
    plan = plan_simulation(cfg)
    started = time.perf_counter()
    with RoundProgress(total=cfg.run.rounds, console=console, enabled=not quiet) as progress:
        result = run_simulation(
            plan.learner,
            plan.partitions,
            plan.strategy,
            plan.engine,
            test_data=plan.test_data,
            executor=cfg.simulation.executor,
            workers=cfg.simulation.workers,
            blas_threads=cfg.simulation.blas_threads,
            faults=plan.faults,
            on_round=progress.update,
            tune_allocator=cfg.simulation.tune_allocator,
        )
    elapsed = time.perf_counter() - started
    final = result.history[-1].central_metrics if result.history else {}
    summary = ", ".join(f"{k} {v:.4f}" for k, v in final.items())
    typer.echo(f"{cfg.run.name}: {len(result.history)} rounds over {len(plan.partitions)} nodes in {elapsed:.1f} s")
    typer.echo(f"final: {summary}")
    if out is not None:
        metadata = {"run": cfg.run.name, "seed": str(cfg.run.seed), "rounds": str(len(result.history))}
        write_run_outputs(out, result.params, result.history, metadata)
        typer.echo(f"wrote history.json, history.csv, model.safetensors and metrics.png to {out}")


@app.command()
def version() -> None:
    """Print the fedlearn version."""
    from fedlearn import __version__

    typer.echo(__version__)


def _mount_subcommands() -> None:
    from fedlearn.analytics.cli import app as analytics_app
    from fedlearn.cli_deploy import register, register_analytics
    from fedlearn.runtime.certs_cli import app as certs_app

    register(app)
    register_analytics(analytics_app)
    app.add_typer(analytics_app, name="analytics", help="Exact federated statistics and models.")
    app.add_typer(certs_app, name="certs", help="A CA and TLS certificates for a deployment.")


def main() -> None:
    """Console entry point: run the app, turning our errors into one line and an exit code."""
    _mount_subcommands()
    try:
        result = app(standalone_mode=False)  # returns the code of a typer.Exit instead of exiting
    except FedlearnError as exc:
        if os.environ.get("FEDLEARN_DEBUG"):
            raise
        typer.secho("error: ", fg="red", err=True, nl=False)
        typer.echo(str(exc), err=True)  # one unwrapped line, whatever the terminal width
        sys.exit(exc.exit_code)
    except typer.Abort:
        console.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click's usage errors carry their own exit code
        code = getattr(exc, "exit_code", None)
        if code is None or os.environ.get("FEDLEARN_DEBUG"):
            raise
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        sys.exit(code)
    sys.exit(result if isinstance(result, int) else 0)
