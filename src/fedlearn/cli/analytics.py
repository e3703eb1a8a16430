"""``fedlearn analytics``: exact federated statistics and models, from a job directory or a coordinator.

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

``remote`` asks a deployed coordinator to run the same workflow over its connected nodes, and
prints the answer as ``fit`` prints its own (see :mod:`fedlearn.cli.analytics_output`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from fedlearn.analytics.catalog import CLASSIFIERS, MODELS, build_estimator, description_arrays, learned_arrays
from fedlearn.cli.analytics_output import (
    print_description,
    print_histograms,
    print_members,
    print_model,
    print_result,
    save_arrays,
)
from fedlearn.cli.options import DEFAULT_API, AdminToken, ApiOption
from fedlearn.cli.reporting import command_group
from fedlearn.core.errors import ConfigError, FedlearnError
from fedlearn.core.limits import DEFAULT_MAX_BINS

app = command_group(help="Exact federated statistics and models: nodes share summaries, never rows.")


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
    min_rows: Annotated[
        int | None, typer.Option(help="Privacy threshold; default: as this node joined, else features + 5.")
    ] = None,
    release_extrema: Annotated[
        bool, typer.Option(help="Share the columns' minima and maxima, which are values of single rows.")
    ] = False,
    max_bins: Annotated[int, typer.Option(help="Most histogram bins to count for the job.")] = DEFAULT_MAX_BINS,
) -> None:
    """Join from a node (or add/remove rows): summarise locally under this node's policy, store only the summary."""
    from fedlearn.analytics.jobdir import JobDir
    from fedlearn.analytics.policy import DisclosurePolicy

    if (csv is None) == (remove is None):
        raise ConfigError("pass exactly one of `--csv` (rows to add) and `--remove` (rows to remove)")
    policy = DisclosurePolicy(min_rows=min_rows, release_extrema=release_extrema, max_bins=max_bins)
    jobdir = JobDir(job)
    source = csv if csv is not None else remove
    assert source is not None
    before = jobdir.load(node)
    record = jobdir.update(node, source, remove=remove is not None, policy=policy)
    verb = "removed" if remove is not None else ("joined with" if before is None else "added")
    typer.echo(f"node {node}: {verb} {record.sources[-1].rows} rows; it now holds {record.summary.count}")


@app.command()
def inspect(job: Annotated[Path, typer.Argument(help="The job directory.")]) -> None:
    """Members, row counts and whether their schemas agree (names and types only)."""
    from fedlearn.analytics.job import schema_problems
    from fedlearn.analytics.jobdir import JobDir

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
        print_histograms(out_console, summary)
        arrays = description_arrays(rows)
    else:
        estimator = build_estimator(model, alpha=alpha, intercept=intercept, n_components=n_components, c=c)
        result = _fit_logistic(jobdir, records, estimator) if model == "logistic" else estimator.fit_summary(summary)
        print_model(out_console, model, result, jobdir.spec.columns, jobdir.spec.target)
        arrays = learned_arrays(result)
    typer.echo(f"fitted {model} on {summary.count} rows from {len(records)} nodes")
    if out is not None:
        save_arrays(out, model, arrays, jobdir.spec.all_columns)
        typer.echo(f"wrote {out}")


def _fit_logistic(jobdir: Any, records: Sequence[Any], estimator: Any) -> Any:
    """Replay each node's recorded CSVs in place as a simulated node, then run Newton rounds."""
    from fedlearn.analytics.job import AnalyticsJob
    from fedlearn.analytics.policy import DisclosurePolicy
    from fedlearn.analytics.sources import ConcatTable, CsvTable

    spec = jobdir.spec
    job = AnalyticsJob(columns=spec.columns, target=spec.target, task="classification")
    for record in records:
        if any(s.op == "remove" for s in record.sources):
            raise ConfigError(
                f"node {record.name!r} has removed rows, so its CSVs no longer describe its data; "
                "re-join it from one CSV of its current rows to fit logistic regression"
            )
        data = ConcatTable([CsvTable(s.path) for s in record.sources])
        rows = job.join(record.name, data, policy=DisclosurePolicy(min_rows=record.min_rows))
        if rows != record.summary.count:
            raise ConfigError(
                f"node {record.name!r}: its CSVs now hold {rows} rows, not the {record.summary.count} "
                "it joined with; re-join it"
            )
    return job.fit(estimator)


@app.command()
def remote(
    columns: Annotated[str, typer.Option(help="Feature columns, comma-separated.")],
    member: Annotated[
        list[str], typer.Option(help="NODE=DATASET: a connected node and the dataset it should summarise; repeat.")
    ],
    model: Annotated[str, typer.Option(help="linear, ridge, pca, gnb, lda, qda, logistic, covariance or describe.")],
    target: Annotated[str | None, typer.Option(help="Target column, if any.")] = None,
    task: Annotated[str, typer.Option(help="'regression', or 'classification' for per-class statistics.")] = (
        "regression"
    ),
    alpha: Annotated[float, typer.Option(help="Ridge penalty.")] = 1.0,
    intercept: Annotated[bool, typer.Option(help="Fit an intercept (linear, ridge, logistic).")] = True,
    n_components: Annotated[int | None, typer.Option(help="PCA components to keep.")] = None,
    c: Annotated[float, typer.Option("--C", help="Logistic inverse regularisation strength.")] = 1.0,
    timeout: Annotated[float, typer.Option(help="Seconds each node has to answer each task.")] = 60.0,
    wait: Annotated[float, typer.Option(help="Seconds to wait for a training run to free the nodes.")] = 10.0,
    out: Annotated[Path | None, typer.Option(help="Write the fitted arrays to this safetensors file.")] = None,
    secure: Annotated[
        bool, typer.Option(help="Sum the statistics under secure aggregation: the coordinator sees only totals.")
    ] = False,
    classes: Annotated[
        str | None, typer.Option(help="Class codes, comma-separated (a --secure or DP classification).")
    ] = None,
    dp_epsilon: Annotated[
        float | None, typer.Option(help="Differential privacy: the ε each member's release spends (at --dp-delta).")
    ] = None,
    dp_noise_multiplier: Annotated[
        float | None, typer.Option(help="Differential privacy: the noise over sensitivity, instead of --dp-epsilon.")
    ] = None,
    dp_delta: Annotated[float, typer.Option(help="Differential privacy: δ of each release.")] = 1e-5,
    api: ApiOption = DEFAULT_API,
    admin_token: AdminToken = "",
) -> None:
    """Fit a model on datasets of a coordinator's nodes: nodes share summaries, never rows.

    Exact by default; with --dp-epsilon (or --dp-noise-multiplier) each node clips its rows to the
    bounds it declares and releases noised statistics, charged to its own privacy budget.
    """
    from fedlearn.web.client import CoordinatorClient

    members: dict[str, str] = {}
    for text in member:
        node_name, _, dataset = (part.strip() for part in text.partition("="))
        if not node_name or not dataset:
            raise ConfigError(f"`--member` must look like NODE=DATASET; got {text!r}")
        if node_name in members:
            raise ConfigError(f"`--member` names node {node_name!r} twice; give each node one dataset")
        members[node_name] = dataset
    feature_columns = list(_split(columns))
    options = {"alpha": alpha, "fit_intercept": intercept, "n_components": n_components, "C": c}
    dp = _dp_options(dp_epsilon, dp_noise_multiplier, dp_delta)
    with CoordinatorClient(api, admin_token=admin_token) as client:
        codes = None if classes is None else [_class_code(c) for c in _split(classes)]
        result = client.analytics(columns=feature_columns, members=members, model=model, target=target, task=task,
                                  options=options, timeout=timeout, wait=wait, secure=secure,
                                  classes=codes, dp=dp)  # fmt: skip
    arrays = print_result(result)
    if out is not None:
        save_arrays(out, model, arrays, [*feature_columns, *([target] if target else [])])
        typer.echo(f"wrote {out}")


def _dp_options(epsilon: float | None, noise_multiplier: float | None, delta: float) -> dict[str, float] | None:
    """The request's ``dp``, or None without either option; the coordinator checks the values themselves."""
    if epsilon is not None and noise_multiplier is not None:
        raise ConfigError("give `--dp-epsilon` or `--dp-noise-multiplier`, not both")
    if epsilon is not None:
        return {"epsilon": epsilon, "delta": delta}
    if noise_multiplier is not None:
        return {"noise_multiplier": noise_multiplier, "delta": delta}
    return None


def _class_code(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"`--classes` lists integer class codes; got {text!r}") from None
