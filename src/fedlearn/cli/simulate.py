"""``fedlearn simulate``: a federated training run on this machine, from one TOML config.

Under differential privacy the progress line shows the ε spent after each round, and the summary
the ε spent at δ against the budget. A plan over budget is refused before any round runs, as one
``error:`` line with the exit code of a ``PrivacyError``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fedlearn.cli.reporting import command_group

app = command_group()


@app.command()
def simulate(
    config: Annotated[Path, typer.Argument(help="Run config (TOML); see examples/.")],
    rounds: Annotated[int | None, typer.Option(help="Override [run] rounds.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override [run] seed.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write history, model and plot to this directory.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar; print only the result.")] = False,
) -> None:
    """Run a federated training simulation on this machine."""
    from fedlearn.cli.progress import RoundProgress, privacy_summary
    from fedlearn.cli.reports import write_run_outputs
    from fedlearn.config import load_config
    from fedlearn.simulation.attacks import backdoor_success
    from fedlearn.simulation.from_config import plan_simulation
    from fedlearn.simulation.run import simulate as run_simulation

    overrides = {k: v for k, v in {"run.rounds": rounds, "run.seed": seed}.items() if v is not None}
    cfg = load_config(config, **overrides)
    plan = plan_simulation(cfg)
    if plan.attack is not None:
        typer.echo(f"attack: {plan.attack.describe()}: {', '.join(plan.attack.attackers) or 'no node'}", err=True)
    started = time.perf_counter()
    with RoundProgress(total=cfg.run.rounds, console=Console(stderr=True), enabled=not quiet) as progress:
        result = run_simulation(
            plan.learner,
            plan.partitions,
            plan.strategy,
            plan.engine,
            test_data=plan.test_data,
            evaluation_data=plan.evaluation_data,
            executor=cfg.simulation.executor,
            workers=cfg.simulation.workers,
            blas_threads=cfg.simulation.blas_threads,
            faults=plan.faults,
            attack=plan.attack,
            on_round=progress.update,
            tune_allocator=cfg.simulation.tune_allocator,
        )
    elapsed = time.perf_counter() - started
    final = result.history[-1].central_metrics if result.history else {}
    summary = ", ".join(f"{k} {v:.4f}" for k, v in final.items())
    typer.echo(f"{cfg.run.name}: {len(result.history)} rounds over {len(plan.partitions)} nodes in {elapsed:.1f} s")
    typer.echo(f"final: {summary}")
    dp = plan.strategy.differential_privacy
    ledger = result.state.ledger
    if dp is not None and ledger is not None:
        latest = result.history[-1].epsilon if result.history else None
        typer.echo(privacy_summary(epsilon=latest if latest is not None else ledger.epsilon(), delta=ledger.delta,
                                   budget=None if math.isinf(dp.epsilon) else dp.epsilon))  # fmt: skip
    attack = plan.attack.attack if plan.attack is not None else None
    success = backdoor_success(plan.learner, result.params, plan.test_data, attack) if attack is not None else None
    if attack is not None and success is not None:
        typer.echo(f"backdoor success: {success:.4f} of triggered test rows classified as {attack.target}")
    if out is not None:
        metadata = {"run": cfg.run.name, "seed": str(cfg.run.seed), "rounds": str(len(result.history))}
        write_run_outputs(out, result.params, result.history, metadata)
        typer.echo(f"wrote history.json, history.csv, model.safetensors and metrics.png to {out}")
