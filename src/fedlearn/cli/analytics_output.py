"""How analytics results leave the CLI: as tables on the terminal, and as safetensors files.

``fedlearn analytics fit`` (summaries in a job directory) and ``fedlearn analytics remote`` (a
coordinator's answer) print through the same functions, so a model looks the same either way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table as RichTable

from fedlearn.analytics.catalog import description_arrays

if TYPE_CHECKING:
    from fedlearn.web.contract import AnalyticsResult


def print_members(
    out: Console,
    title: str,
    columns: Sequence[str],
    members: Sequence[tuple[str, int | None, str, Mapping[str, str]]],
    problems: Sequence[str],
    *,
    total: int | None = None,
) -> None:
    """Members as (node, rows, where, column types), their total, and whether their schemas agree.

    A member's rows are None under secure aggregation, where only ``total`` is known.
    """
    table = RichTable(title=title)
    for heading in ("node", "rows", "data", "column types"):
        table.add_column(heading)
    for name, rows, where, types in members:
        kinds = ", ".join(f"{c}:{types.get(c, 'missing')}" for c in columns)
        table.add_row(name, "hidden" if rows is None else str(rows), where, kinds)
    out.print(table)
    if total is None:
        total = sum(rows or 0 for _, rows, _, _ in members)
    typer.echo(f"{len(members)} nodes, {total} rows; columns: {', '.join(columns)}")
    if problems:
        typer.echo("schema: DISAGREES")
        for p in problems:
            typer.echo(f"  - {p}")
    else:
        typer.echo("schema: agrees" if members else "schema: no nodes yet")


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


def print_histograms(out: Console, summary: Any) -> None:
    """One table per histogram of the job: the rows below the range, each bin, and the rows above it.

    Nodes release only cells of at least their privacy threshold, so a note says how many rows
    the cells leave out when they add up to fewer than the summary's count.
    """
    for spec, hist in zip(summary.spec.histograms, summary.histograms, strict=True):
        table = RichTable(title=f"histogram of {spec.column}")
        table.add_column("bin")
        table.add_column("rows", justify="right")
        table.add_row(f"< {spec.low:g}", str(hist.counts[0]))
        for lo, hi, count in zip(hist.edges[:-1], hist.edges[1:], hist.in_range, strict=True):
            table.add_row(f"[{lo:.4g}, {hi:.4g}{']' if hi == hist.edges[-1] else ')'}", str(count))
        table.add_row(f"> {spec.high:g}", str(hist.counts[-1]))
        out.print(table)
        hidden = summary.count - int(hist.counts.sum())
        if hidden > 0:
            typer.echo(f"{hidden} rows are in cells below a node's privacy threshold, which show as 0")


def save_arrays(path: Path, model: str, arrays: Mapping[str, Any], columns: Sequence[str]) -> None:
    """The fitted arrays as safetensors, with the model name and columns as metadata; no pickle, ever."""
    from fedlearn.core.codec import encode

    metadata = {"model": model, "columns": json.dumps(list(columns))}
    path.write_bytes(encode(dict(arrays), metadata))


def print_result(result: AnalyticsResult) -> dict[str, Any]:
    """Print a coordinator's analytics answer as ``fit`` prints a local one; return its arrays."""
    out = Console(width=max(100, Console().width))
    members = [(m.node, m.rows, f"dataset {m.dataset}", m.types) for m in result.members]
    columns = [*result.columns, *([result.target] if result.target else [])]
    print_members(out, "members", columns, members, result.problems, total=result.rows)
    if result.description is not None:
        rows = [row.model_dump() for row in result.description]
        print_description(out, result.rows, rows)
        arrays = description_arrays(rows)
    else:
        arrays = {k: _array(v) for k, v in result.attributes.items()}
        print_model(out, result.model, SimpleNamespace(**arrays), result.columns, result.target)
    typer.echo(f"fitted {result.model} on {result.rows} rows from {len(members)} nodes")
    if result.privacy is not None:
        spent = result.privacy
        typer.echo(
            f"differential privacy: ε = {spent.epsilon:.4g} at δ = {spent.delta:g} per member "
            f"({len(spent.releases)} releases, noise multiplier {spent.noise_multiplier:.4g})"
        )
    return arrays


def _array(value: Any) -> Any:
    """A learned attribute back from JSON, where None stood for a non-finite float."""
    array = np.asarray(value)
    return array.astype(np.float64) if array.dtype == object else array
