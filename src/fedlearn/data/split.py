"""How a run's data is split over its nodes: one recipe shared by simulation and deployed rehearsals.

A simulation loads a built-in dataset, holds out a test set and partitions the rest over its
virtual nodes. A deployed node configured with the same recipe and seed takes its own part from
here, so it trains on exactly the rows its simulated twin would, which is what makes simulation
and deployment comparable bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedlearn.data.dataset import Dataset
from fedlearn.data.datasets import load_dataset, train_test_split
from fedlearn.data.partition import partition


def split_over_nodes(
    dataset: str,
    *,
    nodes: int,
    test_fraction: float,
    partitioner: str,
    seed: int,
    dataset_options: Mapping[str, Any] | None = None,
    partition_options: Mapping[str, Any] | None = None,
) -> tuple[list[Dataset], Dataset]:
    """Load the built-in ``dataset``, hold out its test split and partition the rest over ``nodes``."""
    loaded = load_dataset(dataset, **dict(dataset_options or {}))
    train, test = train_test_split(loaded, test_fraction, seed)
    parts = partition(partitioner, train, nodes, seed, **dict(partition_options or {}))
    return [train.subset(ix) for ix in parts], test
