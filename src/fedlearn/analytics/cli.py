"""``fedlearn analytics``: create a job, join it from each node, inspect it, fit models.

::

    fedlearn analytics create JOB --columns age,bmi,bp --target y
    fedlearn analytics join JOB --node clinic-a --csv clinic_a.csv     # run on clinic A
    fedlearn analytics join JOB --node clinic-a --csv new_rows.csv     # adds incrementally
    fedlearn analytics join JOB --node clinic-a --remove withdrawn.csv # subtracts
    fedlearn analytics inspect JOB
    fedlearn analytics fit JOB --model ridge --alpha 0.5 --out model.safetensors
    fedlearn analytics remote --coordinator URL --columns age,bmi --target y \
        --member clinic-a=visits --member clinic-b=visits --model linear

The job directory holds summaries only (see :mod:`fedlearn.analytics.jobdir`). Every model but
``logistic`` is solved from them; ``logistic`` needs a Newton round per iteration, so it
re-reads each node's CSVs in place from the node-local paths recorded at join time, which works
where those paths are visible (a simulation on one machine), and never copies a row.

``remote`` asks a deployed coordinator to run the same workflow over its connected nodes. It
lives with the deployment commands (it needs the HTTP client, which sits below this package)
and prints its answer with the helpers here.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from fedlearn.analytics.catalog import CLASSIFIERS, MODELS, build_estimator, description_arrays, learned_arrays
from fedlearn.core.errors import ConfigError, FedlearnError

app = typer.Typer(
    help="Exact federated statistics and models: nodes share summaries, never rows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@contextmanager
def _reported() -> Iterator[None]:
    """Our errors become one line on stderr and the error's exit code, mounted or standalone."""
    try:
        yield
    except FedlearnError as exc:
        if os.environ.get("FEDLEARN_DEBUG"):
            raise
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise SystemExit(exc.exit_code) from None


def _split(text: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip())


def _parse_histogram(text: str) -> Any:
    from fedlearn.analytics.histogram import HistogramSpec

    try:
        column, rest = text.split("=", 1)
        low, high, bins = rest.split(":")
        return HistogramSpec(column=column.strip(), low=float(low), high=float(high), bins=int(bins))
    except ValueError as exc:
        if isinstance(exc, FedlearnError):
            raise
        raise ConfigError(f"`--hist` must look like COLUMN=LOW:HIGH:BINS; got {text!r}") from None


@app.command()
def create(
    job: Annotated[Path, typer.Argument(help="Directory for the job; created if missing.")],
    columns: Annotated[str, typer.Option(help="Feature columns, comma-separated.")],
    target: Annotated[str | None, typer.Option(help="Target column, if any.")] = None,
    task: Annotated[str, typer.Option(help="'regression', or 'classification' for per-class statistics.")] = (
        "regression"
    ),
    hist: Annotated[list[str] | None, typer.Option(help="Fixed-bin histogram, COLUMN=LOW:HIGH:BINS; repeatable.")] = (
        None
    ),
) -> None:
    """Create an analytics job: which columns every node summarises."""
    from fedlearn.analytics.jobdir import JobDir
    from fedlearn.analytics.summary import SummarySpec

    with _reported():
        if task not in ("regression", "classification"):
            raise ConfigError(f"`--task` must be 'regression' or 'classification'; got {task!r}")
        spec = SummarySpec(
            columns=_split(columns),
            target=target,
            by_class=task == "classification",
            histograms=tuple(_parse_histogram(h) for h in hist or ()),
        )
        JobDir.create(job, spec)
        typer.echo(f"created job {job} over {len(spec.columns)} columns" + (f", target {target!r}" if target else ""))


@app.command()
def join(
    job: Annotated[Path, typer.Argument(help="The job directory.")],
    node: Annotated[str, typer.Option(help="This node's name.")],
    csv: Annotated[Path | None, typer.Option(help="CSV of rows to add (header row required).")] = None,
    remove: Annotated[Path | None, typer.Option(help="CSV of rows to remove instead.")] = None,
    min_rows: Annotated[int | None, typer.Option(help="Privacy threshold; default: features + 5.")] = None,
) -> None:
    """Join from a node (or add/remove rows): summarise locally, store only the summary."""
    from fedlearn.analytics.jobdir import JobDir

    with _reported():
        if (csv is None) == (remove is None):
            raise ConfigError("pass exactly one of `--csv` (rows to add) and `--remove` (rows to remove)")
        jobdir = JobDir(job)
        source = csv if csv is not None else remove
        assert source is not None
        before = jobdir.load(node)
        record = jobdir.update(node, source, remove=remove is not None, min_rows=min_rows)
        verb = "removed" if remove is not None else ("joined with" if before is None else "added")
        typer.echo(f"node {node}: {verb} {record.sources[-1].rows} rows; it now holds {record.summary.count}")


@app.command()
def inspect(job: Annotated[Path, typer.Argument(help="The job directory.")]) -> None:
    """Members, row counts and whether their schemas agree (names and types only)."""
    from fedlearn.analytics.job import schema_problems
    from fedlearn.analytics.jobdir import JobDir

    with _reported():
        jobdir = JobDir(job)
        records = jobdir.records()
        columns = jobdir.spec.all_columns
        problems = schema_problems(columns, {r.name: r.types for r in records})
        print_members(
            Console(),
            f"analytics job {job}",
            columns,
            [(r.name, r.summary.count, f"{len(r.sources)} batches", r.types) for r in records],
            problems,
        )


def print_members(
    out: Console,
    title: str,
    columns: Sequence[str],
    members: Sequence[tuple[str, int, str, Mapping[str, str]]],
    problems: Sequence[str],
) -> None:
    """Members as (node, rows, where, column types), their total, and whether their schemas agree."""
    table = RichTable(title=title)
    for heading in ("node", "rows", "data", "column types"):
        table.add_column(heading)
    for name, rows, where, types in members:
        kinds = ", ".join(f"{c}:{types.get(c, 'missing')}" for c in columns)
        table.add_row(name, str(rows), where, kinds)
    out.print(table)
    total = sum(rows for _, rows, _, _ in members)
    typer.echo(f"{len(members)} nodes, {total} rows; columns: {', '.join(columns)}")
    if problems:
        typer.echo("schema: DISAGREES")
        for p in problems:
            typer.echo(f"  - {p}")
    else:
        typer.echo("schema: agrees" if members else "schema: no nodes yet")


@app.command()
def fit(
    job: Annotated[Path, typer.Argument(help="The job directory.")],
    *,
    model: Annotated[str, typer.Option(help=f"One of: {', '.join(MODELS)}.")],
    alpha: Annotated[float, typer.Option(help="Ridge penalty.")] = 1.0,
    intercept: Annotated[bool, typer.Option(help="Fit an intercept (linear, ridge, logistic).")] = True,
    n_components: Annotated[int | None, typer.Option(help="PCA components to keep.")] = None,
    c: Annotated[float, typer.Option("--C", help="Logistic inverse regularisation strength.")] = 1.0,
    out: Annotated[Path | None, typer.Option(help="Write the fitted arrays to this safetensors file.")] = None,
) -> None:
    """Fit a model on the federation's summaries and print it."""
    from fedlearn.analytics.covariance import describe
    from fedlearn.analytics.jobdir import JobDir
    from fedlearn.analytics.moments import merge_all

    with _reported():
        if model not in MODELS:
            raise ConfigError(f"`--model` must be one of {', '.join(MODELS)}; got {model!r}")
        jobdir = JobDir(job)
        records = jobdir.records()
        if not records:
            raise ConfigError(f"no node has joined {job} yet; run `fedlearn analytics join` on each node")
        if model in CLASSIFIERS and not jobdir.spec.by_class:
            raise ConfigError(f"`--model {model}` needs a job created with `--task classification`")
        summary = merge_all([r.summary for r in records])
        out_console = Console(width=max(100, Console().width))
        if model == "describe":
            rows = describe(summary).rows()
            print_description(out_console, summary.count, rows)
            _print_histograms(out_console, summary)
            arrays = description_arrays(rows)
        else:
            estimator = build_estimator(model, alpha=alpha, intercept=intercept, n_components=n_components, c=c)
            result = (
                _fit_logistic(jobdir, records, estimator) if model == "logistic" else estimator.fit_summary(summary)
            )
            print_model(out_console, model, result, jobdir.spec.columns, jobdir.spec.target)
            arrays = learned_arrays(result)
        typer.echo(f"fitted {model} on {summary.count} rows from {len(records)} nodes")
        if out is not None:
            save_arrays(out, model, arrays, jobdir.spec.all_columns)
            typer.echo(f"wrote {out}")


def _fit_logistic(jobdir: Any, records: Sequence[Any], estimator: Any) -> Any:
    """Replay each node's recorded CSVs in place as a simulated node, then run Newton rounds."""
    from fedlearn.analytics.job import AnalyticsJob
    from fedlearn.analytics.sources import ConcatTable, CsvTable

    spec = jobdir.spec
    job = AnalyticsJob(columns=spec.columns, target=spec.target, task="classification")
    for record in records:
        if any(s.op == "remove" for s in record.sources):
            raise ConfigError(
                f"node {record.name!r} has removed rows, so its CSVs no longer describe its data; "
                "re-join it from one CSV of its current rows to fit logistic regression"
            )
        rows = job.join(record.name, ConcatTable([CsvTable(s.path) for s in record.sources]), min_rows=record.min_rows)
        if rows != record.summary.count:
            raise ConfigError(
                f"node {record.name!r}: its CSVs now hold {rows} rows, not the {record.summary.count} "
                "it joined with; re-join it"
            )
    return job.fit(estimator)


def _matrix(title: str, rows: Sequence[str], columns: Sequence[str], values: Any) -> RichTable:
    table = RichTable(title=title)
    table.add_column("")
    for c in columns:
        table.add_column(str(c), justify="right")
    for label, line in zip(rows, np.atleast_2d(values), strict=True):
        table.add_row(str(label), *(f"{v:.6g}" for v in line))
    return table


def print_model(out: Console, model: str, est: Any, features: Sequence[str], target: str | None) -> None:
    """The fitted model's main arrays as tables; ``est`` needs only the learned attributes."""
    features = list(features)
    if model in ("linear", "ridge"):
        out.print(
            _matrix(
                f"{model} regression of {target}",
                ["coef"],
                [*features, "intercept"],
                [[*est.coef_, est.intercept_]],
            )
        )
    elif model == "pca":
        labels = [f"PC{i + 1}" for i in range(est.n_components_)]
        out.print(
            _matrix(
                "principal components",
                labels,
                [*features, "explained var. ratio"],
                np.column_stack([est.components_, est.explained_variance_ratio_]),
            )
        )
    elif model in ("lda", "logistic"):
        labels = [str(k) for k in (est.classes_[1:] if len(est.coef_) == 1 else est.classes_)]
        out.print(
            _matrix(
                f"{model} coefficients by class",
                labels,
                [*features, "intercept"],
                np.column_stack([est.coef_, est.intercept_]),
            )
        )
    elif model in ("gnb", "qda"):
        means = est.theta_ if model == "gnb" else est.means_
        prior = est.class_prior_ if model == "gnb" else est.priors_
        out.print(
            _matrix(
                f"{model} class means and priors",
                [str(k) for k in est.classes_],
                [*features, "prior"],
                np.column_stack([means, prior]),
            )
        )
    else:
        out.print(_matrix("covariance (divided by n)", features, features, est.covariance_))
        out.print(_matrix("correlation", features, features, est.correlation_))


def print_description(out: Console, count: int, rows: Sequence[Mapping[str, Any]]) -> None:
    """A ``describe`` table; a statistic that is None or NaN shows as unknown."""
    table = RichTable(title=f"{count} rows")
    for heading in ("column", "mean", "std", "min", "max", "sum"):
        table.add_column(heading, justify="left" if heading == "column" else "right")
    for row in rows:
        cells = [_number(row[k]) for k in ("mean", "std", "min", "max", "sum")]
        table.add_row(str(row["column"]), *cells)
    out.print(table)


def _number(value: float | None) -> str:
    return "unknown" if value is None or math.isnan(value) else f"{value:.6g}"


def _print_histograms(out: Console, summary: Any) -> None:
    for spec, hist in zip(summary.spec.histograms, summary.histograms, strict=True):
        table = RichTable(title=f"histogram of {spec.column}")
        table.add_column("bin")
        table.add_column("rows", justify="right")
        table.add_row(f"< {spec.low:g}", str(hist.counts[0]))
        for lo, hi, count in zip(hist.edges[:-1], hist.edges[1:], hist.in_range, strict=True):
            table.add_row(f"[{lo:.4g}, {hi:.4g}{']' if hi == hist.edges[-1] else ')'}", str(count))
        table.add_row(f"> {spec.high:g}", str(hist.counts[-1]))
        out.print(table)


def save_arrays(path: Path, model: str, arrays: Mapping[str, Any], columns: Sequence[str]) -> None:
    """The fitted arrays as safetensors, with the model name and columns as metadata; no pickle, ever."""
    from fedlearn.core.codec import encode

    metadata = {"model": model, "columns": json.dumps(list(columns))}
    path.write_bytes(encode(dict(arrays), metadata))


def print_result(result: Any) -> dict[str, Any]:
    """Print a coordinator's analytics answer (``fedlearn.web.contract.AnalyticsResult``); return its arrays."""
    out = Console(width=max(100, Console().width))
    members = [(m.node, m.rows, f"dataset {m.dataset}", m.types) for m in result.members]
    columns = [*result.columns, *([result.target] if result.target else [])]
    print_members(out, "members", columns, members, result.problems)
    if result.model == "describe":
        rows = [row.model_dump() for row in result.description]
        print_description(out, result.rows, rows)
        arrays = description_arrays(rows)
    else:
        arrays = {k: _array(v) for k, v in result.attributes.items()}
        print_model(out, result.model, SimpleNamespace(**arrays), result.columns, result.target)
    typer.echo(f"fitted {result.model} on {result.rows} rows from {len(members)} nodes")
    return arrays


def _array(value: Any) -> Any:
    """A learned attribute back from JSON, where None stood for a non-finite float."""
    array = np.asarray(value)
    return array.astype(np.float64) if array.dtype == object else array
