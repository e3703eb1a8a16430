"""``fedlearn score``: a model version's predictions for every row of a source, upserted into a table.

The job commits one chunk at a time with its progress, so running the same command again after a
crash continues where it stopped, and running it after it finished updates every row without
duplicating any (see docs/batch-scoring.md). A progress line shows the rows scored and the rate;
the summary says how many rows an earlier, interrupted run had already scored.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fedlearn.cli.options import AdminToken
from fedlearn.cli.reporting import command_group

app = command_group()


@app.command()
def score(
    model: Annotated[
        str, typer.Argument(help="NAME@ALIAS or NAME@VERSION on the coordinator, or an exported package file.")
    ],
    source: Annotated[str, typer.Option(help="A database URL (with --table or --query), or a .parquet or .csv file.")],
    key: Annotated[list[str], typer.Option(help="A column identifying each row; repeat it for a composite key.")],
    write: Annotated[str, typer.Option(help="The predictions table, TABLE or SCHEMA.TABLE; created if missing.")],
    table: Annotated[str | None, typer.Option(help="The source table, for a database source.")] = None,
    query: Annotated[str | None, typer.Option(help="The source query, for a database source.")] = None,
    write_url: Annotated[
        str | None, typer.Option(help="The database to write to; by default a database source's own.")
    ] = None,
    chunk_rows: Annotated[int, typer.Option(help="Rows scored and committed together.")] = 10_000,
    probabilities: Annotated[
        bool, typer.Option("--probabilities", help="Also write probability_K per class (classification).")
    ] = False,
    restart: Annotated[bool, typer.Option("--restart", help="Ignore an interrupted run's progress.")] = False,
    progress_table: Annotated[
        str | None, typer.Option(help="The table keeping jobs' progress (default fedlearn_scoring_progress).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress line; print only the summary.")] = False,
    coordinator: Annotated[
        str | None,
        typer.Option(help="The coordinator whose registry holds NAME@ALIAS (default: FEDLEARN_COORDINATOR)."),
    ] = None,
    admin_token: AdminToken = "",
) -> None:
    """Score every row of a table, query or file, and upsert the predictions into a table."""
    from rich.console import Console
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    from fedlearn import load_model
    from fedlearn.registry.scoring import ScoringJob, ScoringReport
    from fedlearn.registry.scoring import score as run_scoring

    named = {"progress_table": progress_table} if progress_table is not None else {}
    job = ScoringJob(
        source=source, keys=tuple(key), write=write, query=query, table=table, write_url=write_url,
        chunk_rows=chunk_rows, probabilities=probabilities, restart=restart, **named,
    )  # fmt: skip
    predictor = load_model(model, coordinator=coordinator, token=admin_token or None)
    display = Progress(
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=quiet,
    )
    task = display.add_task("scoring")

    def show(now: ScoringReport) -> None:
        display.start()  # at the first commit, so that an error before it is one line alone
        rate = f"{now.rows_per_second:,.0f} rows/s"
        display.update(task, description=f"scored {now.rows_scored:,} rows in {now.chunks} chunks ({rate})")

    try:
        report = run_scoring(predictor, job, on_chunk=show)
    finally:
        if display.live.is_started:  # stopping a display never started still prints a blank line
            display.stop()
    summary = (
        f"scored {report.rows_scored:,} rows into {report.target} with {report.model_version} "
        f"in {report.seconds:.1f} s ({report.rows_per_second:,.0f} rows/s)"
    )
    if report.rows_skipped:
        summary += f"; skipped {report.rows_skipped:,} rows already scored by this job"
    typer.echo(summary)
