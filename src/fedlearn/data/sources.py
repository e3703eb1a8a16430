"""Read a node's data where it lives: CSV files and SQL databases, into a ``Dataset``.

The query runs inside the data's own database and the rows arrive in bounded batches, so the
node never needs a second copy of the table. Labels for classification must already be class
indices ``0..n_classes-1``, and ``n_classes`` is given, not inferred: a node that happens to lack
a class must still build a model of the same shape as everyone else.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedlearn.core.errors import ConfigError
from fedlearn.data.dataset import Dataset, TaskType

FETCH_ROWS = 10_000


def load_csv(
    path: str | Path,
    *,
    target: str | None,
    features: Sequence[str] | None = None,
    task: TaskType = "classification",
    n_classes: int = 0,
    name: str = "",
) -> Dataset:
    """Read a CSV file with a header row; every selected column must be numeric."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise ConfigError(f"{path} is empty; expected a header row")
            return _to_dataset(
                header, reader, target=target, features=features, task=task, n_classes=n_classes,
                name=name or path.stem, where=str(path),
            )  # fmt: skip
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def load_sql(
    url: str,
    query: str,
    *,
    target: str | None,
    features: Sequence[str] | None = None,
    task: TaskType = "classification",
    n_classes: int = 0,
    name: str = "",
) -> Dataset:
    """Run ``query`` in the database at ``url`` (any SQLAlchemy URL) and read the result."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    safe_url = _hide_password(url)
    try:
        engine = create_engine(_driver_url(url))
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise ConfigError(f"invalid database URL {safe_url}: {exc}") from None
    try:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(text(query))
            header = list(result.keys())
            rows = (row for part in result.partitions(FETCH_ROWS) for row in part)
            return _to_dataset(
                header, rows, target=target, features=features, task=task, n_classes=n_classes,
                name=name or "sql", where=f"query on {safe_url}",
            )  # fmt: skip
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(f"cannot read data from {safe_url}: {reason}") from None
    finally:
        engine.dispose()


def _to_dataset(
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    target: str | None,
    features: Sequence[str] | None,
    task: TaskType,
    n_classes: int,
    name: str,
    where: str,
) -> Dataset:
    columns = list(header)
    if target is not None and target not in columns:
        raise ConfigError(f"{where} has no target column {target!r}; its columns are {columns}")
    chosen = list(features) if features is not None else [c for c in columns if c != target]
    missing = [c for c in chosen if c not in columns]
    if missing:
        raise ConfigError(f"{where} has no column(s) {missing}; its columns are {columns}")
    if not chosen:
        raise ConfigError(f"{where}: no feature columns selected")
    picks = [columns.index(c) for c in chosen]
    target_index = columns.index(target) if target is not None else None
    x_rows: list[list[float]] = []
    y_rows: list[float] = []
    for line, row in enumerate(rows, start=2):
        try:
            x_rows.append([float(row[i]) for i in picks])
            if target_index is not None:
                y_rows.append(float(row[target_index]))
        except (TypeError, ValueError, IndexError):
            raise ConfigError(f"{where}, row {line}: a selected column is missing or not a number") from None
    x = np.asarray(x_rows, dtype=np.float32).reshape(len(x_rows), len(chosen))
    y = None if target_index is None else _targets(np.asarray(y_rows), task, n_classes, where)
    return Dataset(x=x, y=y, task=task, n_classes=n_classes, feature_names=tuple(chosen), name=name)


def _targets(values: NDArray[np.float64], task: TaskType, n_classes: int, where: str) -> NDArray[Any]:
    if task == "regression":
        return values.astype(np.float32)
    if n_classes < 2:
        raise ConfigError(f"{where}: classification needs `n_classes` >= 2 in the dataset config; got {n_classes}")
    labels = values.astype(np.int64)
    if not np.array_equal(labels, values) or (len(labels) and (labels.min() < 0 or labels.max() >= n_classes)):
        raise ConfigError(f"{where}: classification targets must be integers in [0, {n_classes - 1}]")
    return labels


def _driver_url(url: str) -> str:
    """Plain ``postgresql://`` URLs use psycopg 3, the driver fedlearn installs."""
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)


def _hide_password(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
