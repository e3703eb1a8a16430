"""A rich progress bar that follows rounds and shows the latest loss and accuracy."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fedlearn.engine.history import RoundRecord


class RoundProgress:
    def __init__(self, *, total: int, console: Console, enabled: bool = True) -> None:
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
        self._task = self._progress.add_task("", total=total)

    def __enter__(self) -> RoundProgress:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def update(self, record: RoundRecord) -> None:
        metrics = record.central_metrics or record.federated_metrics or record.fit_metrics
        shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k in ("loss", "accuracy", "mse"))
        if record.failures:
            shown += f" ({len(record.failures)} node(s) failed)"
        self._progress.update(self._task, completed=record.round, description=shown)
