"""``fedlearn robustness``: a grid of simulated runs under attack, written as a CSV, a Markdown table and a plot.

The grid file is a run config plus a ``[grid]`` section (see :mod:`fedlearn.simulation.robustness`
and ``examples/robustness_digits.toml``). Cells run in ``--workers`` processes, each cell with the
in-process executor and one BLAS thread, so colluding attackers share their updates in their
process and the results do not depend on the worker count.
"""

from __future__ import annotations

import csv
import io
import math
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Protocol

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fedlearn.cli.reporting import command_group

if TYPE_CHECKING:
    from fedlearn.simulation.robustness import Cell, CellResult, Grid

app = command_group()


class _OnResult(Protocol):
    def __call__(self, result: CellResult, /) -> None: ...


@app.command()
def robustness(
    grid_file: Annotated[Path, typer.Argument(help="Grid file: a run config plus a [grid] section.")],
    out: Annotated[Path, typer.Option(help="Directory for results.csv, results.md and results.png.")] = Path(
        "runs/robustness"
    ),
    workers: Annotated[int, typer.Option(min=1, help="Processes running cells side by side.")] = 2,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run every defence against every attack, data split, Byzantine fraction and seed of a grid."""
    from fedlearn.simulation.robustness import load_grid

    grid = load_grid(grid_file)
    cells = grid.cells()
    started = time.perf_counter()
    console = Console(stderr=True)
    with Progress(
        TextColumn("cells"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        console=console,
        disable=quiet,
    ) as progress:
        task = progress.add_task("", total=len(cells))

        def advance(result: CellResult) -> None:
            failed = f" failed: {result.error}" if result.error else ""
            where = f"{result.split}/{result.defence}/{result.attack}@{result.fraction:g} seed {result.seed}"
            progress.update(task, advance=1, description=f"{where}{failed}")

        results = _run(grid, cells, workers=workers, on_result=advance)
    elapsed = time.perf_counter() - started
    written = write_outputs(grid, results, out, command=f"fedlearn robustness {grid_file}", seconds=elapsed)
    failed = sum(1 for r in results if r.error)
    typer.echo(
        f"{len(results)} cells in {elapsed:.0f} s on {workers} worker(s){f', {failed} failed' if failed else ''}"
    )
    typer.echo(f"wrote {', '.join(p.name for p in written)} to {out}")


def _run(grid: Grid, cells: Sequence[Cell], *, workers: int, on_result: _OnResult) -> list[CellResult]:
    from fedlearn.simulation.robustness import run_cell

    order = {cell: i for i, cell in enumerate(cells)}
    results: list[CellResult | None] = [None] * len(cells)
    if workers == 1:
        for i, cell in enumerate(cells):
            results[i] = run_cell(grid, cell)
            on_result(results[i])  # type: ignore[arg-type]
        return [r for r in results if r is not None]
    # spawn: a worker must not inherit the progress bar's thread, and spawn is the same everywhere
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures: dict[Future[CellResult], Cell] = {pool.submit(run_cell, grid, cell): cell for cell in cells}
        try:
            for future in as_completed(futures):
                result = future.result()
                results[order[futures[future]]] = result
                on_result(result)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return [r for r in results if r is not None]


def write_outputs(grid: Grid, results: Sequence[CellResult], out: Path, *, command: str, seconds: float) -> list[Path]:
    """``results.csv`` (one row per cell), ``results.md`` (the tables) and ``results.png`` (a heatmap per split)."""
    from fedlearn.simulation.robustness import CSV_COLUMNS, csv_rows, markdown

    out.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(csv_rows(results))
    header = f"`{command}`: {len(results)} runs in {seconds / 60:.1f} min.\n\n"
    files = {"results.csv": text.getvalue(), "results.md": header + markdown(grid, results)}
    written = []
    for name, content in files.items():
        path = out / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(content, encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    written.append(plot(grid, results, out / "results.png"))
    return written


def plot(grid: Grid, results: Sequence[CellResult], path: Path) -> Path:
    """For each split, a heatmap of accuracy (attacks × defences) at the grid's largest Byzantine fraction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fedlearn.simulation.robustness import NO_ATTACK, summarise

    summary = summarise(results)
    g = grid.grid
    defences = list(g.defences)
    attacks = [NO_ATTACK, *g.attacks]
    top = max(g.fractions)
    splits = list(g.splits)
    fig, axes = plt.subplots(1, len(splits), figsize=(1.1 * len(defences) * len(splits) + 2, 0.45 * len(attacks) + 2))
    axes = [axes] if len(splits) == 1 else list(axes)
    image = None
    for axis, split in zip(axes, splits, strict=True):
        values = [[math.nan] * len(defences) for _ in attacks]
        for i, attack in enumerate(attacks):
            for j, defence in enumerate(defences):
                s = summary.get((split, 0.0 if attack == NO_ATTACK else top, attack, defence))
                if s is not None:
                    values[i][j] = s.accuracy
                    label = "" if math.isnan(s.accuracy) else f"{s.accuracy * 100:.0f}"
                    if s.backdoor is not None:
                        label += f"\nbd {s.backdoor * 100:.0f}"
                    axis.text(j, i, label, ha="center", va="center", fontsize=7)
        image = axis.imshow(values, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
        axis.set_xticks(range(len(defences)), defences, rotation=45, ha="right", fontsize=8)
        axis.set_yticks(range(len(attacks)), attacks, fontsize=8)
        axis.set_title(f"{split}, {top:.0%} Byzantine", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes, label="accuracy", shrink=0.8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
