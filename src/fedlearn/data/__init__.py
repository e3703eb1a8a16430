"""Data: the ``Dataset`` container, connectors, partitioners and built-in offline datasets.

Connectors read a node's data where it lives, in batches: CSV and Parquet files (through pyarrow),
SQL databases (through SQLAlchemy) and pandas or polars DataFrames, each encoded through the one
:class:`~fedlearn.data.schema.InputSchema` encoder (``load_*`` into a ``Dataset``; ``iter_batches``
batch by batch against a model's schema, for scoring).

A simulated federation starts from one pooled dataset and splits it across virtual nodes the way
real data is split: evenly (``iid``), by label (``dirichlet``, ``shards``), by volume
(``quantity_skew``) or by the unit that collected it (``natural``). Every random choice takes an
explicit seed, so a partition is reproducible from the run config. The built-in datasets need no
network: scikit-learn's bundled ones and the Synthetic(alpha, beta) generator of FedProx.
"""

from fedlearn.data.dataset import Dataset, TaskType
from fedlearn.data.datasets import DATASETS, load_dataset, train_test_split
from fedlearn.data.partition import (
    PARTITIONERS,
    dirichlet,
    iid,
    natural,
    partition,
    quantity_skew,
    shards,
)
from fedlearn.data.reader import Batch, Reader, iter_batches, open_reader
from fedlearn.data.sources import load_csv, load_frame, load_parquet, load_sql
from fedlearn.data.split import split_over_nodes
from fedlearn.data.sql import SqlReader
from fedlearn.data.synthetic import make_synthetic

__all__ = [
    "DATASETS",
    "PARTITIONERS",
    "Batch",
    "Dataset",
    "Reader",
    "SqlReader",
    "TaskType",
    "dirichlet",
    "iid",
    "iter_batches",
    "load_csv",
    "load_dataset",
    "load_frame",
    "load_parquet",
    "load_sql",
    "make_synthetic",
    "natural",
    "open_reader",
    "partition",
    "quantity_skew",
    "shards",
    "split_over_nodes",
    "train_test_split",
]
