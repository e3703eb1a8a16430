"""Following a run on a coordinator to its end, through restarts of the coordinator.

``fedlearn run``, ``fedlearn runs watch`` and ``fedlearn runs resume`` all follow a run the same
way: a progress bar of its rounds, and an exit that says how the run ended (the code of the error
that failed it, 1 for a stopped run). A coordinator that restarts (an upgrade, a crash under
systemd) is unreachable for a few seconds and then resumes the run from its checkpoint, so the
follower keeps asking until ``reconnect_timeout`` seconds of silence, not just once.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from fedlearn.cli.progress import RoundProgress, privacy_summary
from fedlearn.core.errors import CoordinatorUnavailable

if TYPE_CHECKING:
    from fedlearn.web.client import CoordinatorClient
    from fedlearn.web.contract import RunDetail, RunSummary

POLL_SECONDS = 1.0
"""How often the follower asks the coordinator how the run is doing."""
DEFAULT_RECONNECT_SECONDS = 120.0
"""How long the follower keeps asking an unreachable coordinator before it gives up."""


def follow(
    client: CoordinatorClient, run: RunSummary, *, reconnect_timeout: float = DEFAULT_RECONNECT_SECONDS
) -> RunDetail:
    """Poll the run until it ends, showing its rounds; return it as it ended."""
    with RoundProgress(total=run.rounds_total, console=Console(stderr=True), status=run.status) as progress:
        unreachable_since: float | None = None
        while True:
            try:
                current = client.run(run.id)
            except CoordinatorUnavailable as exc:
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > reconnect_timeout:
                    raise CoordinatorUnavailable(
                        f"{exc}; stopped following run {run.id} after {reconnect_timeout:g} s without an answer "
                        f"(it may still be running: `fedlearn runs watch {run.id}` follows it again)"
                    ) from None
                progress.update(None, status="coordinator unreachable, retrying")
                time.sleep(POLL_SECONDS)
                continue
            unreachable_since = None
            progress.update(current.history[-1] if current.history else None, status=current.status)
            if current.finished:
                return current
            time.sleep(POLL_SECONDS)


def report_end(ended: RunDetail) -> None:
    """Say how the run ended and exit accordingly: 0 completed, the failing error's code, 1 stopped.

    Under differential privacy the privacy it spent is said first, however it ended: a failed or
    stopped run has spent it too.
    """
    if ended.privacy is not None:
        typer.echo(privacy_summary(epsilon=ended.privacy.epsilon, delta=ended.privacy.delta,
                                   budget=ended.privacy.budget))  # fmt: skip
    failure = ended.failure()
    if failure is not None:
        raise failure  # reported as one line, with the exit code of the error that failed the run
    typer.echo(f"run {ended.id}: {ended.status} {ended.message}".rstrip())
    if ended.status != "completed":
        raise typer.Exit(1)
