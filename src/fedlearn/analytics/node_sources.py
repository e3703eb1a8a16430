"""What a deployed node's analytics tasks read: its NODE.toml datasets, in their databases where they can stay.

A SQL dataset (``pushdown = true``, its default) and a CSV dataset that opts in are read by
analytics tasks as a :class:`~fedlearn.analytics.sql_pushdown.SqlPushdownTable` or a
:class:`~fedlearn.analytics.duckdb_table.DuckDBTable`: summaries are computed where the data lie
and no row enters the node. A dataset that declares ``[columns]`` is not: its categories are
one-hot encoded on the node, which SQL aggregates over the raw columns would not match, so its rows
are streamed as :meth:`~fedlearn.runtime.node_config.NodeConfig.analytics_data` streams them.
Columns are named as in a loaded dataset: the features, and the target as ``y``.
"""

from __future__ import annotations

from collections.abc import Mapping

from fedlearn.analytics.duckdb_table import DuckDBTable
from fedlearn.analytics.sources import Table
from fedlearn.analytics.sql_pushdown import SqlPushdownTable
from fedlearn.core.errors import ConfigError
from fedlearn.data.dataset import Dataset
from fedlearn.runtime.node_config import CsvSource, NodeConfig, Source, SqlSource


def in_database(source: Source) -> Table | None:
    """The table analytics tasks read ``source`` through without its rows, or None when they read its rows."""
    if not isinstance(source, SqlSource | CsvSource) or not source.pushdown or source.columns:
        return None
    if isinstance(source, SqlSource):
        return SqlPushdownTable(
            source.url, query=source.query, table=source.table, features=source.features, target=source.target
        )
    return DuckDBTable(
        source.path, format="csv", delimiter=source.delimiter, features=source.features, target=source.target
    )


def analytics_data(config: NodeConfig, loaded: Mapping[str, Dataset]) -> dict[str, Dataset | Table]:
    """What the node's analytics tasks read: each dataset that can stay in its database through it (even one the
    node trains on, in ``loaded``), every other one as :meth:`NodeConfig.analytics_data` reads it.

    A dataset that stays in its database is checked now without reading a row: the database is
    reached, its columns named in NODE.toml exist and are numbers, and a classification target has its
    ``n_classes`` (its schema comes from ``LIMIT 0``).
    """
    kept: dict[str, Table] = {}
    for name, source in config.datasets.items():
        try:
            if isinstance(source, SqlSource | CsvSource) and (table := in_database(source)) is not None:
                _check_numeric(table.schema(), source)
                kept[name] = table
        except ConfigError as exc:
            raise ConfigError(f"dataset {name!r}: {exc}") from None
    others = config.analytics_data(loaded, names=[name for name in config.datasets if name not in kept])
    return {name: kept[name] if name in kept else others[name] for name in config.datasets}


def _check_numeric(schema: Mapping[str, str], source: SqlSource | CsvSource) -> None:
    """Refuse at start-up what the streamed path refuses when it opens the data: text, and classes left uncounted.

    The database's own column types say it without a row: a text (or date) feature would fail
    every task, and a classification target without ``n_classes`` would give models of another shape.
    """
    text = [name for name, kind in schema.items() if kind == "str"]
    if text:
        raise ConfigError(
            f"column {text[0]!r} is text; declare it as a category with its list of categories under "
            "[datasets.NAME.columns] (the dataset is then read on the node), or leave it out of `features`"
        )
    if source.task == "classification" and source.target is not None and source.n_classes < 2:
        raise ConfigError(f"classification needs `n_classes` >= 2 in the dataset config; got {source.n_classes}")
