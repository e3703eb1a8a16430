"""Registering models in the coordinator's store, and finding them again by reference.

Three things can be registered, each as the next immutable version of a name:

- a **completed run** (:func:`register_run`): its final checkpoint's parameters, with lineage read
  from the store: the run's config, strategy, privacy settings and ε spent, the metrics of its
  last round, and which nodes took part;
- a **fitted analytics estimator** (:func:`register_estimator`), for a script that fitted one;
- an **analytics answer** (:func:`register_analytics`), the JSON ``POST /api/analytics`` returned.

Registering the same run twice is allowed and makes a new version: a version is immutable, so a
corrected input schema or new class labels for the same parameters can only be a new version, and
its lineage names the run, so the two are easy to tell apart.

A reference is ``name`` (the newest version), ``name@3`` (version 3) or ``name@champion`` (the
version the alias points at); ``name@latest`` is the newest, like ``name``.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from fedlearn.config import RunConfig, parse_config
from fedlearn.core.checks import check_name
from fedlearn.core.config_files import parse_toml
from fedlearn.core.errors import ConfigError
from fedlearn.data.schema import InputSchema
from fedlearn.engine.history import RoundRecord
from fedlearn.registry.package import ANALYTICS_MODELS, ModelPackage
from fedlearn.registry.predictors import analytics_package
from fedlearn.runtime.store import ModelRecord, Store

ANALYTICS_OPTIONS = ("alpha", "fit_intercept", "C", "max_iter")
"""The analytics request options that shape a registered estimator (``AnalyticsOptions``' names)."""


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``name@selector`` as (name, selector); the selector is None for a bare name (the newest)."""
    name, at, selector = ref.partition("@")
    check_name("model name", name)
    if at and not selector:
        raise ConfigError(f"model reference {ref!r} ends in '@'; write NAME, NAME@VERSION or NAME@ALIAS")
    if at and not selector.isdigit():
        check_name("alias", selector, letter_first=True)
    return name, (selector or None)


def resolve(store: Store, ref: str) -> ModelRecord:
    """The version a reference names; ``NotFoundError`` names what is missing."""
    name, selector = parse_ref(ref)
    return store.resolve_model(name, selector)


def package_bytes(store: Store, record: ModelRecord) -> bytes:
    """The version's package file, exactly as registered (sha256-verified by the store)."""
    return store.get_blob(record.digest)


def register(store: Store, package: ModelPackage, *, run_id: str | None = None) -> ModelRecord:
    """Register ``package`` as the next version of its name (its own ``version`` is replaced)."""
    return store.add_model(
        package.name,
        kind=package.kind,
        model=package.model,
        task=package.task,
        run_id=run_id,
        lineage=dict(package.lineage),
        input_schema=package.schema.to_json(),
        created_at=datetime.fromtimestamp(package.created, UTC),
        package=lambda version: replace(package, version=version).to_bytes(),
    )


def register_run(
    store: Store,
    run_id: str,
    *,
    name: str,
    schema: InputSchema | None = None,
    classes: tuple[str | int | float, ...] | None = None,
) -> ModelRecord:
    """Register a completed run's final model as the next version of ``name``.

    ``schema`` defaults to the run config's ``[model] features`` (float columns), else ``x0`` ..
    ``x{n-1}``; ``classes`` to the class indices. A run that is not ``completed`` is refused: its
    final model does not exist yet, or never will.
    """
    check_name("model name", name)  # before the run is looked up, so a bad name is the error reported
    run = store.get_run(run_id)
    if run.status != "completed":
        raise ConfigError(f"run {run_id} is {run.status}; only a completed run can be registered")
    state = store.load_checkpoint(run_id)
    if state is None:
        raise ConfigError(f"run {run_id} completed without a checkpoint, so it has no model to register")
    config = parse_config(parse_toml(run.config_toml, source="run config"), source="run config")
    model = config.model
    n_features = model.declared_n_features()
    if schema is None:
        if n_features is None:
            raise ConfigError(f"run {run_id}'s config declares no [model] n_features; give the input schema")
        schema = InputSchema.numeric(model.features or [f"x{i}" for i in range(n_features)])
    if n_features is not None and schema.n_features != n_features:
        raise ConfigError(f"`schema` makes {schema.n_features} features; run {run_id} was trained on {n_features}")
    package = ModelPackage(
        name=name,
        version=1,
        kind="learner",
        model=model.learner,
        options=model.options(),
        task=model.task,
        classes=tuple(range(model.n_classes)) if classes is None and model.task == "classification" else classes or (),
        schema=schema,
        params=state.params,
        lineage=_run_lineage(store, run_id, run.name, config, run.config_toml, state.round, list(state.history)),
    )
    return register(store, package, run_id=run_id)


def register_estimator(
    store: Store, estimator: Any, *, name: str, schema: InputSchema, lineage: Mapping[str, Any] | None = None
) -> ModelRecord:
    """Register a fitted analytics estimator (a ``Federated*`` model that predicts)."""
    return register(store, analytics_package(estimator, name=name, schema=schema, lineage=lineage))


def register_analytics(
    store: Store,
    result: Mapping[str, Any],
    *,
    name: str,
    options: Mapping[str, Any] | None = None,
    schema: InputSchema | None = None,
) -> ModelRecord:
    """Register the model of an analytics answer (``POST /api/analytics``'s JSON).

    ``options`` are the request's (``alpha``, ``fit_intercept``, ``C``, ``max_iter``), which the
    answer does not repeat; ``schema`` defaults to its ``columns`` as float columns.
    """
    from fedlearn.analytics.catalog import build_estimator

    model = result.get("model")
    if model not in ANALYTICS_MODELS:
        raise ConfigError(
            f"only analytics models that predict can be registered {sorted(ANALYTICS_MODELS)}; got {model!r}"
        )
    given = dict(options or {})
    unknown = sorted(set(given) - set(ANALYTICS_OPTIONS))
    if unknown:
        raise ConfigError(f"analytics `options` takes {list(ANALYTICS_OPTIONS)}; got unknown {unknown}")
    estimator = build_estimator(
        str(model),
        alpha=given.get("alpha", 1.0),
        intercept=given.get("fit_intercept", True),
        c=given.get("C", 1.0),
        max_iter=given.get("max_iter", 100),
    )
    for attribute, value in _arrays(result.get("attributes")).items():
        setattr(estimator, attribute, value.item() if value.ndim == 0 and attribute != "n_features_in_" else value)
    columns = result.get("columns")
    if schema is None:
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise ConfigError(f"analytics `columns` must be a list of column names; got {columns!r}")
        schema = InputSchema.numeric(columns)
    members = result.get("members")
    members = members if isinstance(members, list) else []
    lineage = {
        "analytics": {key: result.get(key) for key in ("model", "columns", "target", "task", "rows", "secure")},
        "nodes": sorted({str(m.get("node")) for m in members if isinstance(m, Mapping)}),
        "privacy": result.get("privacy") if isinstance(result.get("privacy"), Mapping) else {},
        "metrics": {"rows": result.get("rows")},
        "config": {"options": given},
    }
    return register_estimator(store, estimator, name=name, schema=schema, lineage=json_ready(lineage))


def _arrays(attributes: object) -> dict[str, np.ndarray]:
    """Learned arrays from an analytics answer's nested lists; a missing (non-finite) value is refused."""
    if not isinstance(attributes, Mapping) or not attributes:
        raise ConfigError("the analytics answer has no fitted `attributes`; only a fitted model can be registered")
    arrays: dict[str, np.ndarray] = {}
    for key, value in attributes.items():
        try:
            array = np.asarray(value)
        except ValueError as exc:
            raise ConfigError(f"analytics attribute {key!r} is not a regular array: {exc}") from None
        if array.dtype.kind not in "biuf":
            raise ConfigError(f"analytics attribute {key!r} must hold finite numbers; it holds {array.dtype} values")
        arrays[str(key)] = array
    return arrays


def _run_lineage(
    store: Store, run_id: str, run_name: str, config: RunConfig, config_toml: str, round_number: int,
    history: list[RoundRecord],
) -> dict[str, Any]:  # fmt: skip
    last = history[-1] if history else None
    privacy = config.privacy
    left_out: dict[str, str] = {}
    for record in history:
        left_out.update(record.failures)
    lineage = {
        "run_id": run_id,
        "run_name": run_name,
        "round": round_number,
        "config": tomllib.loads(config_toml),
        "strategy": {"name": config.strategy.name, **config.strategy.options()},
        "nodes": {
            "enrolled": sorted(node.name for node in store.list_nodes() if not node.revoked),
            "contributed": contributed(history),
            "replies_per_round": [record.replies for record in history],
            "left_out": left_out,
        },
        "privacy": {
            "secure_aggregation": privacy.secure_aggregation.enabled,
            "differential_privacy": privacy.differential_privacy.model_dump() if privacy.differential_privacy.enabled
            else None,
            "epsilon": store.epsilons(run_id).get(run_id),
        },
        "metrics": {} if last is None else {
            "fit": dict(last.fit_metrics), "federated": dict(last.federated_metrics),
            "central": dict(last.central_metrics),
        },
    }  # fmt: skip
    return json_ready(lineage)


def contributed(history: list[RoundRecord] | tuple[RoundRecord, ...]) -> list[str]:
    """Every node whose update went into some round's aggregate, sorted."""
    return sorted({node for record in history for node in record.contributors})


def json_ready(value: Any) -> Any:
    """JSON-ready: non-finite floats become None and TOML dates text, so lineage always survives the file."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)
