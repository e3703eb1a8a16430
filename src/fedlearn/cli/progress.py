"""The CLI's one progress display: rounds done of the total, time elapsed, the latest loss and accuracy.

``fedlearn simulate`` feeds it each round as the engine finishes it; ``fedlearn run`` feeds it the
latest round of a deployed run each time it polls the coordinator, with the run's status. Both
therefore show the same bar, and the same metrics, and under differential privacy the ε spent so
far, so that a budget running out is seen while it happens. :func:`privacy_summary` is the one
line that every command ending a run prints about its privacy.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fedlearn.engine.history import RoundRecord

_SHOWN = ("loss", "accuracy", "mse")


class RoundProgress:
    """A bar over ``total`` rounds on ``console``; ``enabled=False`` shows nothing (``--quiet``)."""

    def __init__(self, *, total: int, console: Console, enabled: bool = True, status: str = "") -> None:
        self._progress = Progress(
            TextColumn("round"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            disable=not enabled,
            transient=False,
        )
        self._task = self._progress.add_task(status, total=total)

    def __enter__(self) -> RoundProgress:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def update(self, record: RoundRecord | None, *, status: str = "") -> None:
        """Show ``record``, the latest completed round (None before the first), after ``status`` if given.

        The metrics are the most trustworthy ones the round has: central evaluation, else the nodes'
        federated evaluation, else their training metrics. Nodes left out of the round are counted.
        """
        shown = [status] if status else []
        if record is not None:
            metrics = record.central_metrics or record.federated_metrics or record.fit_metrics
            shown += [f"{k}={v:.4f}" for k, v in metrics.items() if k in _SHOWN]
            if record.epsilon is not None:
                shown.append(f"ε={record.epsilon:.2f}")
            if record.failures:
                shown.append(f"({len(record.failures)} node(s) failed)")
        completed = 0 if record is None else record.round
        self._progress.update(self._task, completed=completed, description=" ".join(shown))


def privacy_summary(*, epsilon: float, delta: float, budget: float | None) -> str:
    """The run's privacy in one line: ε spent at δ, and how much of the budget that is.

    ε is shown to three significant digits and δ as written in configs (``1e-05``); a run whose
    config sets no limit says that its ε is only reported, so nobody mistakes it for a guarantee.
    """
    spent = f"privacy: ε = {epsilon:.3g} at δ = {delta:g}"
    if budget is None:
        return f"{spent} (no budget: ε is reported, not enforced)"
    return f"{spent}, of a budget of ε = {budget:g} ({epsilon / budget:.0%} spent)"
