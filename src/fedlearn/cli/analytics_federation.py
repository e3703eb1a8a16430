"""``fedlearn analytics federation``: standing analytics federations on a deployed coordinator.

::

    fedlearn analytics federation create visits --columns age,bmi --target y --model linear --model ridge \
        --member clinic-a=visits --member clinic-b=visits --refresh-seconds 3600
    fedlearn analytics federation add visits clinic-a visits_2024q3     # the node summarises a new dataset
    fedlearn analytics federation remove visits clinic-a BATCH_ID       # exact: its summary is dropped
    fedlearn analytics federation refresh visits                        # every member summarises again
    fedlearn analytics federation fetch visits ridge --out ridge.safetensors
    fedlearn analytics federation list | show NAME | delete NAME

Every command goes through the coordinator's HTTP API with the admin token; see
:mod:`fedlearn.analytics.federation` for what each one does on the coordinator and the nodes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from fedlearn.cli.options import DEFAULT_API, AdminToken, ApiOption
from fedlearn.cli.reporting import command_group
from fedlearn.core.errors import ConfigError

app = command_group(help="Standing federations on a coordinator: add and remove data, refresh, fetch models.")

NameArgument = Annotated[str, typer.Argument(help="The federation's name.")]
_SLACK = 30.0
"""Seconds a command waits for the coordinator beyond the federation's own deadlines."""


def _client(api: str, admin_token: str) -> Any:
    from fedlearn.web.federation_client import FederationClient

    return FederationClient(api, admin_token=admin_token)


def _members(pairs: list[str]) -> dict[str, str]:
    members: dict[str, str] = {}
    for text in pairs:
        node, _, dataset = (part.strip() for part in text.partition("="))
        if not node or not dataset:
            raise ConfigError(f"`--member` must look like NODE=DATASET; got {text!r}")
        if node in members:
            raise ConfigError(f"`--member` names node {node!r} twice; add more datasets with `add` once created")
        members[node] = dataset
    return members


def _histogram(text: str) -> dict[str, Any]:
    try:
        column, rest = text.split("=", 1)
        low, high, bins = rest.split(":")
        return {"column": column.strip(), "low": float(low), "high": float(high), "bins": int(bins)}
    except ValueError:
        raise ConfigError(f"`--hist` must look like COLUMN=LOW:HIGH:BINS; got {text!r}") from None


@app.command()
def create(
    name: NameArgument,
    columns: Annotated[str, typer.Option(help="Feature columns, comma-separated.")],
    member: Annotated[list[str], typer.Option(help="NODE=DATASET: a member and its first dataset; repeat.")],
    model: Annotated[list[str], typer.Option(help="A model to keep fitted: linear, ridge, pca, gnb, lda, ...")],
    target: Annotated[str | None, typer.Option(help="Target column, if any.")] = None,
    task: Annotated[str, typer.Option(help="'regression', or 'classification' for per-class statistics.")] = (
        "regression"
    ),
    hist: Annotated[list[str] | None, typer.Option(help="Fixed-bin histogram, COLUMN=LOW:HIGH:BINS; repeatable.")] = (
        None
    ),
    alpha: Annotated[float, typer.Option(help="Ridge penalty.")] = 1.0,
    intercept: Annotated[bool, typer.Option(help="Fit an intercept (linear, ridge).")] = True,
    n_components: Annotated[int | None, typer.Option(help="PCA components to keep.")] = None,
    refresh_seconds: Annotated[
        float | None, typer.Option(help="Refresh from the nodes this often; default: only when asked.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds each node has to answer each task.")] = 60.0,
    wait: Annotated[float, typer.Option(help="Seconds to wait for a training run to free the nodes.")] = 10.0,
    api: ApiOption = DEFAULT_API,
    admin_token: AdminToken = "",
) -> None:
    """Create a federation: what every member summarises and which models it keeps fitted."""
    request = {
        "name": name,
        "columns": [c.strip() for c in columns.split(",") if c.strip()],
        "target": target,
        "task": task,
        "histograms": [_histogram(h) for h in hist or []],
        "models": list(model),
        "options": {"alpha": alpha, "fit_intercept": intercept, "n_components": n_components},
        "members": _members(member),
        "refresh_seconds": refresh_seconds,
        "timeout": timeout,
        "wait": wait,
    }
    with _client(api, admin_token) as client:
        created = client.create_federation(request)
    typer.echo(f"created federation {created.name} with members {', '.join(m.node for m in created.members)}; "
               f"run `fedlearn analytics federation refresh {created.name}` to summarise their data")  # fmt: skip


@app.command("list")
def list_(api: ApiOption = DEFAULT_API, admin_token: AdminToken = "") -> None:
    """List the coordinator's federations."""
    with _client(api, admin_token) as client:
        found = client.federations()
    if not found:
        typer.echo("no federations")
    for f in found:
        refreshed = f.refreshed_at.isoformat() if f.refreshed_at else "never"
        schedule = f"every {f.refresh_seconds:g} s" if f.refresh_seconds else "on demand"
        typer.echo(f"{f.name}  {f.rows} rows  models {','.join(f.models)}  refreshed {refreshed} ({schedule})")


@app.command()
def show(name: NameArgument, api: ApiOption = DEFAULT_API, admin_token: AdminToken = "") -> None:
    """Show a federation: members, batches, fitted models and what the last refresh found."""
    with _client(api, admin_token) as client:
        detail = client.federation(name)
    typer.echo(json.dumps(detail.model_dump(mode="json"), indent=2))


@app.command()
def delete(name: NameArgument, api: ApiOption = DEFAULT_API, admin_token: AdminToken = "") -> None:
    """Delete a federation with its summaries and models (the nodes' data is untouched)."""
    with _client(api, admin_token) as client:
        client.delete_federation(name)
    typer.echo(f"deleted federation {name}")


@app.command()
def add(
    name: NameArgument,
    node: Annotated[str, typer.Argument(help="The member node (joins the federation if new).")],
    dataset: Annotated[str, typer.Argument(help="A dataset on that node holding the rows to add.")],
    api: ApiOption = DEFAULT_API,
    admin_token: AdminToken = "",
) -> None:
    """Add a batch: the node summarises its dataset, and the federation's models are refitted."""
    with _client(api, admin_token) as client:
        detail = client.federation(name)
        batch = client.add_batch(name, node, dataset, timeout=detail.wait + detail.timeout + _SLACK)
    typer.echo(f"added batch {batch.id}: {batch.rows} rows of {batch.dataset} on {batch.node}")


@app.command()
def remove(
    name: NameArgument,
    node: Annotated[str, typer.Argument(help="The member node the batch came from.")],
    batch: Annotated[str, typer.Argument(help="The batch id, as `add` or `show` gives it.")],
    api: ApiOption = DEFAULT_API,
    admin_token: AdminToken = "",
) -> None:
    """Remove a batch exactly: its summary is dropped and the models refitted; no node is asked."""
    with _client(api, admin_token) as client:
        client.remove_batch(name, node, batch)
    typer.echo(f"removed batch {batch} of {node} from {name}")


@app.command()
def refresh(name: NameArgument, api: ApiOption = DEFAULT_API, admin_token: AdminToken = "") -> None:
    """Summarise every member's batches again and refit; members that fail keep their summaries, stale."""
    with _client(api, admin_token) as client:
        detail = client.federation(name)
        stages = max((sum(b.node == m.node for b in detail.batches) for m in detail.members), default=0)
        refreshed = client.refresh(name, timeout=detail.wait + detail.timeout * stages + _SLACK)
    stale = (refreshed.report or {}).get("stale")
    typer.echo(f"refreshed {name}: {refreshed.rows} rows")
    for node, reason in (stale if isinstance(stale, dict) else {}).items():
        typer.echo(f"  stale: {node}: {reason}")
    for fitted in refreshed.fitted:
        if fitted.error:
            typer.echo(f"  {fitted.model} not fitted: {fitted.error}")


@app.command()
def fetch(
    name: NameArgument,
    model: Annotated[str, typer.Argument(help="A model the federation keeps.")],
    out: Annotated[Path | None, typer.Option(help="Write the learned arrays to this safetensors file.")] = None,
    api: ApiOption = DEFAULT_API,
    admin_token: AdminToken = "",
) -> None:
    """Fetch a federation's current model and print it (or save its arrays, to load with `estimator_of`)."""
    from rich.console import Console

    from fedlearn.analytics.catalog import learned_arrays
    from fedlearn.cli.analytics_output import print_model, save_arrays
    from fedlearn.web.federation_client import estimator_of

    with _client(api, admin_token) as client:
        answer = client.federation_model(name, model)
    estimator = estimator_of(answer)
    typer.echo(f"{name}/{model}: {answer.rows} rows, fitted {answer.fitted_at.isoformat()}")
    print_model(Console(width=max(100, Console().width)), model, estimator, answer.columns, answer.target)
    if out is not None:
        columns = [*answer.columns, *([answer.target] if answer.target else [])]
        save_arrays(out, model, learned_arrays(estimator), columns)
        typer.echo(f"wrote {out}")
