"""Pin the public API of ``fedlearn.data`` so changes to it are deliberate."""

from __future__ import annotations

import fedlearn.data


def test_data_all_is_pinned() -> None:
    assert fedlearn.data.__all__ == [
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


def test_data_all_names_resolve() -> None:
    assert all(hasattr(fedlearn.data, name) for name in fedlearn.data.__all__)


def test_partitioners_lists_every_partitioner() -> None:
    assert fedlearn.data.PARTITIONERS == ("dirichlet", "iid", "natural", "quantity_skew", "shards")
