"""What a deployed node's analytics tasks read: its NODE.toml datasets, in their databases where they can stay.

A SQL dataset (``pushdown = true``, its default) and a CSV dataset that opts in are read by
analytics tasks as a :class:`~fedlearn.analytics.sql_pushdown.SqlPushdownTable` or a
:class:`~fedlearn.analytics.duckdb_table.DuckDBTable`: summaries are computed where the data lie
and no row enters the node. Such a dataset is loaded into memory only when the node trains on it or
evaluates on it. Columns are named as in a loaded dataset: the features, and the target as ``y``.
"""

from __future__ import annotations

from fedlearn.analytics.duckdb_table import DuckDBTable
from fedlearn.analytics.sources import Table
from fedlearn.analytics.sql_pushdown import SqlPushdownTable
from fedlearn.data.dataset import Dataset
from fedlearn.runtime.node_config import CsvSource, NodeConfig, Source, SqlSource


def in_database(source: Source) -> Table | None:
    """The table analytics tasks read ``source`` through without loading it, or None when it is loaded."""
    if isinstance(source, SqlSource) and source.pushdown:
        return SqlPushdownTable(source.url, query=source.query, features=source.features, target=source.target)
    if isinstance(source, CsvSource) and source.pushdown:
        return DuckDBTable(source.path, format="csv", features=source.features, target=source.target)
    return None


def node_datasets(config: NodeConfig) -> tuple[dict[str, Dataset], dict[str, Dataset | Table]]:
    """The datasets loaded into the node (to train and evaluate on) and what its analytics tasks read.

    A dataset that stays in its database is loaded only when the node trains or evaluates on it.
    """
    kept = {name: table for name, source in config.datasets.items() if (table := in_database(source)) is not None}
    used = {config.training_dataset(), config.node.evaluation_dataset} if config.node.learner else set()
    if config.node.dataset is not None:
        used.add(config.node.dataset)
    loaded = dict(config.load_datasets([name for name in config.datasets if name not in kept or name in used]))
    return loaded, {**loaded, **kept}
