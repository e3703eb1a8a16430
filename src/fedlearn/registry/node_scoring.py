"""The node's side of federated scoring and evaluation: a registered model applied where the rows live.

Both task kinds carry the model package: its arrays as the task's params and its JSON description
in the config (:data:`~fedlearn.core.messages.MODEL_PACKAGE_KEY`). The node checks the pair exactly
as it checks a package file (:meth:`~fedlearn.registry.package.ModelPackage.from_json`),
bounded in size first, and loads only built-in learners and analytics models: a package naming user
code (``pkg.mod:fn``) is refused, since a node never imports code a coordinator names.

``score`` (config ``dataset``, ``write``: the table, ``keys``: JSON list of key columns)
    Refused unless the node's ``[scoring] allow`` is true. Reads the dataset from its source in
    chunks, encodes each with the package's schema, predicts, and upserts one row per key with the
    model version into the node's own database (``[scoring] write_url``, else the SQL dataset's
    own), through batch scoring (:func:`fedlearn.registry.scoring.score`): idempotent, resumed
    after an interruption (``restart`` in the config scores everything again), and a chunk the
    schema refuses fails the task naming its first key, the chunks before it kept.
    Replies counts only: ``rows_scored``, ``rows_skipped`` (already written by an interrupted run
    of the same job), and the predicted class counts
    (``predicted/<index>``) or the mean prediction, each only when it covers at least ``min_rows``
    rows; ``suppressed`` counts the classes withheld.
``evaluate_model`` (config ``dataset``, ``bins``)
    Evaluates on the dataset's held-out rows when it is the dataset the node trains on and NODE.toml
    holds rows back (``holdout_fraction``) or names an ``evaluation_dataset``; any other dataset is
    used whole. Replies the sums of :mod:`~fedlearn.registry.federated_metrics` (confusion matrix
    and score histograms, or error sums), refused below ``min_rows`` rows or with a class of fewer.

Columns outside the node's ``[policy] columns`` are refused as if absent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedlearn.analytics.handlers import config_list, config_str
from fedlearn.analytics.policy import DisclosurePolicy, not_available
from fedlearn.client.node_app import Handler, NodeApp
from fedlearn.core.errors import ConfigError, PrivacyError
from fedlearn.core.messages import EVALUATE_MODEL, HELDOUT_METRIC, MODEL_PACKAGE_KEY, SCORE, Reply, Task
from fedlearn.data.dataset import Dataset, TaskType
from fedlearn.data.schema import InputSchema
from fedlearn.data.split import hold_out
from fedlearn.registry import scoring as batch_scoring
from fedlearn.registry.federated_metrics import EvaluationSums, check_bins, node_sums
from fedlearn.registry.fleet_contract import check_keys, check_table_name
from fedlearn.registry.package import ModelPackage
from fedlearn.registry.predictors import RegisteredModel, load_package
from fedlearn.registry.scoring import ScoringJob
from fedlearn.runtime.node_config import BuiltinSource, CsvSource, NodeConfig, ParquetSource, SqlSource

_HOW = "the node's operator can change it with `min_rows` in its [policy]"


def package_from_task(task: Task, *, max_bytes: int) -> RegisteredModel:
    """The task's model, checked like a package file and loaded without importing any code it names."""
    if task.params.nbytes > max_bytes:
        raise ConfigError(
            f"the model package's arrays are {task.params.nbytes} bytes; this node takes at most {max_bytes} "
            "([scoring] max_package_bytes)"
        )
    text = task.config.get(MODEL_PACKAGE_KEY)
    if not isinstance(text, str) or not text:
        raise ConfigError(f"task {task.kind!r} needs config {MODEL_PACKAGE_KEY!r}, the package's JSON description")
    package = ModelPackage.from_json(text, task.params)
    if package.trusted_code:
        raise ConfigError(
            f"model {package.ref} names user code {package.model!r}; a node runs only built-in learners and "
            "analytics models, never code a coordinator names"
        )
    return load_package(package)


def model_task_config(package: ModelPackage) -> dict[str, str]:
    """The config entry that carries ``package``'s description (its arrays go as the task's params)."""
    return {MODEL_PACKAGE_KEY: json.dumps(package.description(), sort_keys=True)}


def scoring_handlers(
    config: NodeConfig, datasets: Mapping[str, Dataset], *, policy: DisclosurePolicy
) -> dict[str, Handler]:
    """The ``score`` and ``evaluate_model`` handlers of a node with this config, data and policy."""
    section = config.scoring

    def check_columns(names: list[str]) -> None:
        if policy.columns is not None:
            for name in names:
                if name not in policy.columns:
                    raise ConfigError(not_available(name))

    def dataset_name(task: Task) -> str:
        name = config_str(task, "dataset")
        if name not in config.datasets:
            raise ConfigError(f"dataset {name!r} is not declared on this node; declared: {sorted(config.datasets)}")
        return name

    def threshold(model: RegisteredModel) -> int:
        return model.schema.n_features + 5 if policy.min_rows is None else policy.min_rows

    def score(task: Task, app: NodeApp) -> Reply:
        if not section.allow:
            raise PrivacyError("this node does not take scoring tasks ([scoring] allow is false)")
        name = dataset_name(task)
        table = check_table_name(task.config.get("write"))
        if section.tables is not None and table not in section.tables:
            raise PrivacyError(f"table {table!r} is not one this node lets scoring write ([scoring] tables)")
        keys = check_keys(config_list(task, "keys"))
        model = package_from_task(task, max_bytes=section.max_package_bytes)
        check_columns([*model.schema.names, *keys])
        job = _job(config, name, table=table, keys=keys, restart=task.config.get("restart", False) is True)
        counting = _Counting(model)
        report = batch_scoring.score(counting, job)
        metrics = _released(model, counting, report.rows_scored, report.rows_skipped, threshold(model))
        return Reply(node_id=app.node_id, kind=task.kind, round=task.round, metrics=metrics,
                     num_examples=report.rows_scored)  # fmt: skip

    def evaluate(task: Task, app: NodeApp) -> Reply:
        name = dataset_name(task)
        model = package_from_task(task, max_bytes=section.max_package_bytes)
        rows, held_out = _evaluation_rows(config, datasets, name)
        if rows.y is None:
            raise ConfigError(f"dataset {name!r} has no target column, so a model cannot be evaluated on it")
        if rows.task != model.task:
            raise ConfigError(f"dataset {name!r} is a {rows.task} dataset; model {model.version} is {model.task}")
        check_columns([*model.schema.names, "y"])
        n_classes = len(model.classes)
        bins = check_bins(task.config.get("bins"), n_classes) if n_classes else 0
        if bins > policy.max_bins:
            raise PrivacyError(f"`bins` {bins} is more than this node's [policy] max_bins ({policy.max_bins})")
        features = model.schema.encode(
            {n: rows.x[:, i] for i, n in enumerate(rows.feature_names)}, where=f"dataset {name!r}"
        )
        targets = _class_indices(model, rows.y, name) if model.task == "classification" else rows.y
        sums = _evaluate_all(model, features, targets, bins=bins, chunk_rows=section.chunk_rows)
        _check_release(sums, threshold(model))
        return Reply(
            node_id=app.node_id, kind=task.kind, round=task.round, params=sums.to_params(),
            num_examples=sums.rows, metrics={HELDOUT_METRIC: float(held_out)},
        )  # fmt: skip

    return {SCORE: score, EVALUATE_MODEL: evaluate}


def audit_fields(task: Task, reply: Reply) -> dict[str, Any]:
    """What a scoring or evaluation task touched, for the node's audit log: dataset, model, table, keys."""
    fields: dict[str, Any] = {"dataset": task.config.get("dataset")}
    try:
        description = json.loads(str(task.config.get(MODEL_PACKAGE_KEY, "")))
        fields["model"] = f"{description.get('name')}/{description.get('version')}"
        fields["columns"] = [str(c.get("name")) for c in description.get("schema", [])]
    except (ValueError, AttributeError, TypeError, RecursionError):
        pass
    if task.kind == SCORE:
        fields["table"], fields["keys"] = task.config.get("write"), task.config.get("keys")
    return fields


class _Counting:
    """The model behind the ``Predictor`` protocol, counting what it predicts: the scoring reply's summaries."""

    def __init__(self, model: RegisteredModel) -> None:
        self.model = model
        self.class_counts = np.zeros(len(model.classes), np.int64)
        self.total = 0.0

    @property
    def schema(self) -> InputSchema:
        return self.model.schema

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def task(self) -> TaskType:
        return self.model.task

    def predict(self, features: NDArray[np.float32]) -> NDArray[Any]:
        predictions = np.asarray(self.model.predict(features))
        if self.task == "classification":
            self.class_counts += np.bincount(predictions.astype(np.int64), minlength=len(self.class_counts))
        else:
            self.total += float(predictions.astype(np.float64).sum())
        return predictions

    def predict_proba(self, features: NDArray[np.float32]) -> NDArray[np.float64]:
        return self.model.predict_proba(features)


def _job(config: NodeConfig, name: str, *, table: str, keys: tuple[str, ...], restart: bool) -> ScoringJob:
    """Batch scoring's job for the node's dataset ``name``, written where the node says."""
    source = config.datasets[name]
    write_url = config.scoring.write_url
    chunk_rows = config.scoring.chunk_rows
    if isinstance(source, SqlSource):
        return ScoringJob(source=source.url, query=source.query, table=source.table, keys=keys, write=table,
                          write_url=write_url, chunk_rows=chunk_rows, restart=restart)  # fmt: skip
    if isinstance(source, CsvSource | ParquetSource):
        if write_url is None:
            raise ConfigError(f"dataset {name!r} is a file; set [scoring] write_url, the database for its predictions")
        return ScoringJob(source=str(source.path), keys=keys, write=table, write_url=write_url, chunk_rows=chunk_rows,
                          restart=restart)  # fmt: skip
    assert isinstance(source, BuiltinSource)
    raise ConfigError(f"dataset {name!r} is a built-in dataset; it has no key column, so it cannot be scored")


def _released(
    model: RegisteredModel, counting: _Counting, scored: int, skipped: int, min_rows: int
) -> dict[str, float]:
    """The reply's metrics: totals, then each summary only where it covers at least ``min_rows`` rows."""
    metrics = {"rows_scored": float(scored), "rows_skipped": float(skipped)}
    if model.task == "classification":
        suppressed = 0
        for index, count in enumerate(counting.class_counts.tolist()):
            if count >= min_rows:
                metrics[f"predicted/{index}"] = float(count)
            elif count > 0:
                suppressed += 1
        metrics["suppressed"] = float(suppressed)
    elif scored >= min_rows:
        metrics["prediction_mean"] = counting.total / scored
    return metrics


def _evaluation_rows(config: NodeConfig, datasets: Mapping[str, Dataset], name: str) -> tuple[Dataset, bool]:
    """The rows to evaluate on, and whether the node held them out of training.

    A dataset the node did not load at start (it trains on others) is read whole for this task.
    """
    node = config.node

    def rows(dataset: str) -> Dataset:
        return datasets[dataset] if dataset in datasets else config.datasets[dataset].load()

    if name != config.training_dataset():
        return rows(name), True
    if node.holdout_fraction is not None:
        return hold_out(rows(name), node.holdout_fraction, node.holdout_seed)[1], True
    if node.evaluation_dataset is not None:
        return rows(node.evaluation_dataset), True
    return rows(name), False


def _class_indices(model: RegisteredModel, y: NDArray[Any], dataset: str) -> NDArray[np.int64]:
    """The dataset's labels as indices into the model's classes."""
    index = {float(c): i for i, c in enumerate(model.classes) if isinstance(c, int | float)}
    values = y.astype(np.float64)
    unknown = sorted({float(v) for v in np.unique(values)} - set(index))
    if unknown:
        raise ConfigError(
            f"dataset {dataset!r} has class label(s) {unknown[:5]} that model {model.version} does not know; "
            f"its classes are {list(model.classes)}"
        )
    return np.array([index[float(v)] for v in values], dtype=np.int64)


def _evaluate_all(
    model: RegisteredModel, features: NDArray[np.float32], targets: NDArray[Any], *, bins: int, chunk_rows: int
) -> EvaluationSums:
    n_classes = len(model.classes)
    total: EvaluationSums | None = None
    for start in range(0, max(len(features), 1), chunk_rows):
        x, t = features[start : start + chunk_rows], targets[start : start + chunk_rows]
        if model.task == "classification":
            probabilities = model.predict_proba(x) if len(x) else np.zeros((0, n_classes))
            predictions = probabilities.argmax(axis=1) if len(x) else np.zeros(0, np.int64)
            part = node_sums(model.task, t, predictions, probabilities, n_classes=n_classes, bins=bins)
        else:
            predictions = model.predict(x) if len(x) else np.zeros(0)
            if not np.isfinite(predictions).all():
                raise ConfigError(f"model {model.version} predicted a missing or infinite value")
            part = node_sums(model.task, t, predictions, None, n_classes=0, bins=0)
        total = part if total is None else total + part
    assert total is not None
    return total


def _check_release(sums: EvaluationSums, min_rows: int) -> None:
    if sums.rows < min_rows:
        raise PrivacyError(f"refusing to share an evaluation: it covers fewer than {min_rows} rows; {_HOW}")
    if sums.confusion is not None and any(0 < c < min_rows for c in sums.confusion.sum(axis=1).tolist()):
        raise PrivacyError(
            f"refusing to share an evaluation: a class has fewer than {min_rows} rows, the privacy threshold; {_HOW}"
        )
