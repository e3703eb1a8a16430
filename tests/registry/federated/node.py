"""A node with SQLite, PostgreSQL or CSV datasets, its scoring handlers, and the tasks a coordinator sends."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np

from fedlearn.analytics.policy import DisclosurePolicy
from fedlearn.client.node_app import NodeApp
from fedlearn.core.messages import EVALUATE_MODEL, SCORE, Reply, Task
from fedlearn.registry.node_scoring import model_task_config, scoring_handlers
from fedlearn.registry.package import ModelPackage
from fedlearn.runtime.node_config import load_node_config
from tests.registry.federated.models import FEATURES


def sqlite_table(path: Path, x: np.ndarray, y: np.ndarray, *, table: str = "customers", first_id: int = 0) -> str:
    """The rows as table ``table`` (id, f0.., label) of a SQLite file; returns its URL."""
    with sqlite3.connect(path) as conn:
        conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, {', '.join(f'{f} REAL' for f in FEATURES)}, "
                     "label INTEGER)")  # fmt: skip
        conn.executemany(
            f"INSERT INTO {table} VALUES (?, {', '.join('?' for _ in FEATURES)}, ?)",
            [(first_id + i, *map(float, row), int(label)) for i, (row, label) in enumerate(zip(x, y, strict=True))],
        )
    return f"sqlite:///{path}"


def dataset_toml(name: str, url: str, query: str, *, task: str = "classification", extra: str = "") -> str:
    classes = "n_classes = 2\n" if task == "classification" else ""
    return f"""
[datasets.{name}]
source = "sql"
url = "{url}"
query = "{query}"
target = "label"
features = {json.dumps(list(FEATURES))}
task = "{task}"
{classes}{extra}
"""


def node(tmp: Path, toml: str, *, load: bool = True, name: str = "node-a") -> NodeApp:
    """The node's app; ``load=False`` for data the node could not load to train on (scoring reads it afresh)."""
    path = tmp / "NODE.toml"
    path.write_text(toml)
    config = load_node_config(path)
    policy = DisclosurePolicy(**config.policy.model_dump(exclude={"audit_log"}))
    return NodeApp(
        node_id=name, handlers=scoring_handlers(config, config.load_datasets() if load else {}, policy=policy)
    )


def score(app: NodeApp, package: ModelPackage, *, dataset: str = "customers", write: str = "scores",
          keys: tuple[str, ...] = ("id",)) -> Reply:  # fmt: skip
    config = {**model_task_config(package), "dataset": dataset, "write": write, "keys": json.dumps(list(keys))}
    return app.handle(Task(kind=SCORE, round=0, params=package.params, config=config))


def evaluate(app: NodeApp, package: ModelPackage, *, dataset: str = "customers", bins: int = 100) -> Reply:
    config = {**model_task_config(package), "dataset": dataset, "bins": bins}
    return app.handle(Task(kind=EVALUATE_MODEL, round=0, params=package.params, config=config))


def table_rows(path: Path, table: str = "scores") -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT id, prediction, model_version FROM {table} ORDER BY id").fetchall()


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
