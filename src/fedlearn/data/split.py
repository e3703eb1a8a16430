"""How a run's data is split over its nodes, and each node's rows into training and held-out rows.

A simulation loads a built-in dataset, holds out a test set and partitions the rest over its
virtual nodes. A deployed node configured with the same recipe and seed takes its own part from
here, so it trains on exactly the rows its simulated twin would, which is what makes simulation
and deployment comparable bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fedlearn.core.checks import check_int
from fedlearn.core.errors import ConfigError
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


def hold_out(dataset: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """A node's rows to train on and the rows it keeps back for evaluation, stratified by class.

    Federated evaluation on the rows a node trained on reports what the model memorised: 0.99
    where held-out rows give 0.967. Simulated and deployed nodes that hold out the same fraction
    with the same seed keep back the same rows.
    """
    try:
        return train_test_split(dataset, fraction, seed)
    except ConfigError as exc:
        rows = len(dataset)
        raise ConfigError(f"cannot hold out {fraction:g} of dataset {dataset.name!r} ({rows} rows): {exc}") from None


_TRUSTED_STREAM = 0x7472757374  # "trust": the seed stream of the trusted sample, apart from the split's


def trusted_sample(
    dataset: str,
    *,
    examples: int,
    test_fraction: float,
    seed: int,
    dataset_options: Mapping[str, Any] | None = None,
) -> Dataset:
    """``examples`` rows drawn uniformly from the training split that :func:`split_over_nodes` partitions.

    This is FLTrust's root dataset in a simulation: Cao et al. give the coordinator a small clean
    dataset from the clients' distribution (100 examples in their experiments) and draw it from
    the training data, so the test split stays unseen. The draw has a seed stream of its own,
    so taking it changes neither the split nor the nodes' parts.
    """
    examples = check_int("trusted_examples", examples, low=1)
    loaded = load_dataset(dataset, **dict(dataset_options or {}))
    train, _ = train_test_split(loaded, test_fraction, seed)
    if examples > len(train):
        raise ConfigError(
            f"`trusted_examples` must be at most the {len(train)} training rows of dataset {dataset!r}; got {examples}"
        )
    rng = np.random.default_rng(np.random.SeedSequence([seed, _TRUSTED_STREAM]))
    return train.subset(np.sort(rng.choice(len(train), size=examples, replace=False)))
