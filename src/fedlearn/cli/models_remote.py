"""``fedlearn models score-remote|evaluate-remote``: a registered version applied where the nodes' rows live.

``score-remote`` asks each node to score its own dataset and write the predictions into its own
database; ``evaluate-remote`` asks for evaluation sums on each node's held-out rows and prints
per-node and pooled metrics. Both print a table, or the coordinator's JSON answer with ``--json``.
No answer holds a row.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from fedlearn.cli.options import DEFAULT_API, AdminToken, ApiOption

NodesOption = Annotated[
    list[str] | None, typer.Option("--node", help="A connected node to ask; repeat (default: every connected node).")
]
TimeoutOption = Annotated[float, typer.Option(help="Seconds every node has to answer.", min=0.001)]
WaitOption = Annotated[float, typer.Option(help="Seconds to wait for a training run to free the nodes.", min=0)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the coordinator's JSON answer.")]


def score_remote(
    ref: Annotated[str, typer.Argument(help="NAME@ALIAS, NAME@VERSION or NAME (its newest version).")],
    dataset: Annotated[str, typer.Option(help="The dataset to score, by its name on the nodes.")],
    write: Annotated[str, typer.Option(help="The table each node writes its predictions to, in its own database.")],
    key: Annotated[list[str], typer.Option(help="A key column of a row; repeat for a composite key.")],
    node: NodesOption = None,
    restart: Annotated[bool, typer.Option(help="Score every row again, ignoring an interrupted run's progress.")] = (
        False
    ),
    timeout: TimeoutOption = 300.0,
    wait: WaitOption = 10.0,
    as_json: JsonOption = False,
    api: ApiOption = DEFAULT_API,
    admin_token: AdminToken = "",
) -> None:
    """Each node scores its own rows and writes the predictions into its own database; counts come back."""
    from fedlearn.web.client import CoordinatorClient

    with CoordinatorClient(api, admin_token=admin_token) as client:
        answer = client.score_remote(ref, dataset=dataset, write=write, keys=key, nodes=node, timeout=timeout,
                                     wait=wait, restart=restart)  # fmt: skip
    if as_json:
        typer.echo(answer.model_dump_json(indent=2))
        return
    rows = []
    for name, entry in answer.nodes.items():
        summary = entry.get("predicted") or entry.get("prediction_mean")
        rows.append([name, _count(entry, "rows_scored"), _count(entry, "rows_skipped"),
                     "-" if summary is None else json.dumps(summary), entry.get("error") or ""])  # fmt: skip
    pooled = answer.pooled
    rows.append(["(all)", str(pooled["rows_scored"]), str(pooled["rows_skipped"]), "", ""])
    _table(f"{answer.model} scored {answer.dataset!r} into {answer.table!r}",
           ["node", "scored", "skipped", "predictions", "error"], rows)  # fmt: skip
    if pooled["nodes_failed"]:
        raise typer.Exit(1)


def evaluate_remote(
    ref: Annotated[str, typer.Argument(help="NAME@ALIAS, NAME@VERSION or NAME (its newest version).")],
    dataset: Annotated[str, typer.Option(help="The dataset to evaluate on (its held-out rows), by its name.")],
    bins: Annotated[int, typer.Option(help="Equal bins over [0, 1] of each class probability, for the AUC.", min=1)] = (
        1000
    ),
    node: NodesOption = None,
    timeout: TimeoutOption = 300.0,
    wait: WaitOption = 10.0,
    as_json: JsonOption = False,
    api: ApiOption = DEFAULT_API,
    admin_token: AdminToken = "",
) -> None:
    """Per-node and pooled metrics of a version on the nodes' held-out rows, built from their sums."""
    from fedlearn.web.client import CoordinatorClient

    with CoordinatorClient(api, admin_token=admin_token) as client:
        answer = client.evaluate_remote(ref, dataset=dataset, bins=bins, nodes=node, timeout=timeout, wait=wait)
    if as_json:
        typer.echo(answer.model_dump_json(indent=2))
        return
    names = ["rows", "accuracy", "macro_f1", "auc"] if answer.task == "classification" else ["rows", "mse", "mae", "r2"]
    rows = [[name, *(_metric(entry.get(m)) for m in names), entry.get("error") or ""]
            for name, entry in answer.nodes.items()]  # fmt: skip
    if answer.pooled is not None:
        rows.append(["(pooled)", *(_metric(answer.pooled.get(m)) for m in names), ""])
    _table(f"{answer.model} on {answer.dataset!r}", ["node", *names, "error"], rows)
    if answer.pooled is not None and answer.task == "classification":
        typer.echo(f"pooled confusion matrix (rows: true class, columns: predicted) of {answer.classes}:")
        for line in answer.pooled["confusion"]:
            typer.echo("  " + " ".join(f"{v:>8}" for v in line))
    if any(not entry.get("ok") for entry in answer.nodes.values()):
        raise typer.Exit(1)


def register(group: typer.Typer) -> None:
    """Add ``score-remote`` and ``evaluate-remote`` to the ``fedlearn models`` group."""
    group.command("score-remote")(score_remote)
    group.command("evaluate-remote")(evaluate_remote)


def _count(entry: dict[str, Any], key: str) -> str:
    return "-" if entry.get(key) is None else str(entry[key])


def _metric(value: Any) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*header, title=title)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
