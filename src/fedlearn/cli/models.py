"""``fedlearn models``: the coordinator's model registry, through its HTTP API.

``list`` and ``show`` read it; ``register`` makes a completed run, or the JSON answer of an
analytics request, the next version of a name; ``alias`` points (or with ``--delete`` removes) a
name such as ``champion``; ``export`` downloads a version's package file, or writes it as an
MLflow model directory. A model is referred to as ``NAME``, ``NAME@VERSION`` or ``NAME@ALIAS``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from fedlearn.cli.options import DEFAULT_API, AdminToken, ApiOption
from fedlearn.cli.reporting import command_group

app = command_group(help="List, show, register, alias and export model versions on a coordinator.")


@app.command("list")
def models_list(api: ApiOption = DEFAULT_API, admin_token: AdminToken = "") -> None:
    """Every registered model: its newest version, how many versions, and its aliases."""
    from rich.console import Console
    from rich.table import Table

    from fedlearn.web.client import CoordinatorClient

    with CoordinatorClient(api, admin_token=admin_token) as client:
        summaries = client.models()
    table = Table("name", "latest", "versions", "kind", "task", "aliases", "registered")
    for m in summaries:
        aliases = ", ".join(f"{alias}→{version}" for alias, version in sorted(m.aliases.items())) or "-"
        table.add_row(m.name, str(m.latest), str(m.versions), m.kind, m.task, aliases,
                      m.updated_at.isoformat(timespec="seconds"))  # fmt: skip
    Console().print(table)


@app.command("show")
def models_show(
    ref: Annotated[str, typer.Argument(help="NAME (every version), or NAME@VERSION / NAME@ALIAS (one version).")],
    api: ApiOption = DEFAULT_API,
    admin_token: AdminToken = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the coordinator's JSON answer.")] = False,
) -> None:
    """A model's versions and aliases, or one version with its lineage and input columns."""
    from fedlearn.core.errors import NotFoundError
    from fedlearn.web.client import CoordinatorClient

    name, _, selector = ref.partition("@")
    with CoordinatorClient(api, admin_token=admin_token) as client:
        detail = client.model_detail(name)
        if not selector:
            answer: Any = detail
        else:
            version = _selected(detail.aliases, [v.version for v in detail.versions], selector)
            if version is None:
                raise NotFoundError(
                    f"model {name!r} has no alias {selector!r}; `fedlearn models show {name}` lists them"
                )
            answer = client.model_version(name, version)
    if as_json:
        typer.echo(answer.model_dump_json(indent=2))
        return
    versions = [answer] if selector else detail.versions
    for v in versions:
        source = f"run {v.run_id}" if v.run_id else v.kind
        aliases = f" [{', '.join(v.aliases)}]" if v.aliases else ""
        typer.echo(f"{v.name}@{v.version}{aliases}: {v.model} ({v.task}) from {source}, "
                   f"registered {v.created_at.isoformat(timespec='seconds')}, {v.size} bytes")  # fmt: skip
    if selector:
        columns = ", ".join(f"{c['name']}:{c.get('type', 'float')}" for c in answer.input_schema)
        typer.echo(f"  input: {columns}")
        for key in ("round", "strategy", "nodes", "privacy", "metrics"):
            if key in answer.lineage:
                typer.echo(f"  {key}: {json.dumps(answer.lineage[key], sort_keys=True)}")


@app.command("register")
def models_register(
    name: str,
    run: Annotated[str | None, typer.Option("--run", help="A completed run's id: its final model.")] = None,
    analytics: Annotated[
        Path | None, typer.Option(help="A JSON file holding an analytics answer (POST /api/analytics).")
    ] = None,
    options: Annotated[
        str | None, typer.Option(help="The analytics request's options as JSON, e.g. '{\"alpha\": 0.5}'.")
    ] = None,
    schema: Annotated[
        Path | None, typer.Option(help='A JSON file of input columns: [{"name": ..., "type": ..., "categories": ...}].')
    ] = None,
    classes: Annotated[str | None, typer.Option(help="A run's class labels in index order, comma-separated.")] = None,
    api: ApiOption = DEFAULT_API,
    admin_token: AdminToken = "",
) -> None:
    """Register a completed run, or an analytics answer, as the next version of NAME."""
    from fedlearn.web.client import CoordinatorClient
    from fedlearn.web.contract import RegisterRequest

    request = _validated(
        RegisterRequest,
        name=name,
        run_id=run,
        analytics=None if analytics is None else _json_file(analytics, "--analytics"),
        options=None if options is None else _json_text(options, "--options"),
        input_schema=None if schema is None else _json_file(schema, "--schema"),
        classes=None if classes is None else [label.strip() for label in classes.split(",")],
    )
    with CoordinatorClient(api, admin_token=admin_token) as client:
        registered = client.register_model(request)
    typer.echo(f"registered {registered.name}@{registered.version}")


@app.command("alias")
def models_alias(
    name: str,
    alias: str,
    version: Annotated[int | None, typer.Argument(help="The version the alias should name.", min=1)] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias instead.")] = False,
    api: ApiOption = DEFAULT_API,
    admin_token: AdminToken = "",
) -> None:
    """Point ALIAS of NAME at VERSION (creating or moving it), or remove it with --delete."""
    from fedlearn.core.errors import ConfigError
    from fedlearn.web.client import CoordinatorClient

    if (version is None) != delete:
        raise ConfigError("give the VERSION the alias should name, or --delete to remove it")
    with CoordinatorClient(api, admin_token=admin_token) as client:
        if version is None:
            client.delete_alias(name, alias)
            typer.echo(f"alias {name}@{alias} removed")
            return
        client.set_alias(name, alias, version)
    typer.echo(f"{name}@{alias} -> version {version}")


@app.command("export")
def models_export(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@ALIAS.")],
    out: Annotated[Path, typer.Option(help="The package file (or, with --format mlflow, the directory) to write.")],
    output_format: Annotated[
        Literal["package", "mlflow"],
        typer.Option("--format", help="package: one safetensors file; mlflow: an MLflow pyfunc model directory."),
    ] = "package",
    api: ApiOption = DEFAULT_API,
    admin_token: AdminToken = "",
) -> None:
    """Download a model version: its package file, or an MLflow model directory holding it."""
    from fedlearn.registry.package import ModelPackage
    from fedlearn.web.client import CoordinatorClient

    with CoordinatorClient(api, admin_token=admin_token) as client:
        data = client.model_package(ref)
    package = ModelPackage.from_bytes(data)  # checked before anything is written
    if output_format == "mlflow":
        from fedlearn.registry.mlflow_model import write_mlflow_model

        write_mlflow_model(package, out)
    else:
        package.write(out)
    typer.echo(f"{package.ref} written to {out}")


def _selected(aliases: dict[str, int], versions: list[int], selector: str) -> int | None:
    if selector.isdigit():
        return int(selector)
    if selector == "latest":
        return max(versions)
    return aliases.get(selector)


def _validated(model: Any, **fields: Any) -> Any:
    """The request, or one ConfigError line naming the option at fault."""
    from pydantic import ValidationError

    from fedlearn.core.errors import ConfigError

    try:
        return model(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(first["msg"].removeprefix("Value error, ")) from None


def _json_file(path: Path, option: str) -> Any:
    from fedlearn.core.errors import ConfigError

    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{option}: cannot read {path}: {exc.strerror}") from None
    return _json_text(text, f"{option} {path}")


def _json_text(text: str, where: str) -> Any:
    from fedlearn.core.errors import ConfigError

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON: {exc}") from None
