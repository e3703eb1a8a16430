"""Partitioners: how a pooled dataset is split across simulated nodes.

Real federations are rarely IID: hospitals see different diseases (label skew), some phones
hold far more data than others (quantity skew) and data often arrives already grouped by device
(natural partitions). These functions recreate those conditions reproducibly so that an
algorithm's behaviour under heterogeneity can be measured.

Every partitioner returns ``list[np.ndarray]``: one int64 array of row indices per node, each
sorted ascending, pairwise disjoint and together covering every row. Randomised partitioners
take an explicit ``seed`` and give identical output for identical arguments; there is no
default RNG to fall back to.

:func:`partition` dispatches by name for the config layer; :data:`PARTITIONERS` lists the names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fedlearn.core.checks import NON_NEGATIVE, POSITIVE, check_call_options, check_int, check_real, check_seed
from fedlearn.core.errors import ConfigError
from fedlearn.data.dataset import Dataset

Indices = NDArray[np.int64]

MAX_DIRICHLET_DRAWS = 1000
"""How many times :func:`dirichlet` re-draws before concluding ``min_size`` is unreachable."""


def apportion(total: int, weights: ArrayLike) -> NDArray[np.int64]:
    """Split ``total`` into integers proportional to ``weights`` that sum to exactly ``total``.

    Largest-remainder rounding: each part gets the floor of its quota and the leftover units go
    to the largest fractional parts (ties to the lower index), so the result is deterministic.
    """
    w = np.asarray(weights, dtype=np.float64)
    quotas = total * w / w.sum()
    parts = np.floor(quotas).astype(np.int64)
    leftover = total - int(parts.sum())
    order = np.argsort(-(quotas - parts), kind="stable")
    parts[order[:leftover]] += 1
    return parts


def iid(n_rows: int, num_nodes: int, seed: int) -> list[Indices]:
    """Shuffle the rows and deal them into ``num_nodes`` parts whose sizes differ by at most one."""
    n_rows = check_int("n_rows", n_rows, low=1)
    num_nodes = _check_num_nodes(num_nodes, n_rows)
    rng = check_seed(seed)
    return _sorted_parts(np.array_split(rng.permutation(n_rows), num_nodes))


def dirichlet(labels: ArrayLike, num_nodes: int, alpha: float, seed: int, *, min_size: int = 1) -> list[Indices]:
    """Label skew: each class is spread over the nodes in proportions drawn from Dir(alpha).

    Small ``alpha`` (0.1) gives each node a few dominant classes; large ``alpha`` (100) is close
    to IID. Small alpha can leave a node (nearly) empty, so the proportions are re-drawn until
    every node holds at least ``min_size`` rows, up to :data:`MAX_DIRICHLET_DRAWS` times; after
    that a :class:`ConfigError` says which knob to turn. This follows Hsu et al. (2019) and the
    re-draw rule common to NIID-Bench-style benchmarks, without their balancing heuristics,
    so the proportions stay exactly Dirichlet-distributed (conditioned on ``min_size``).
    """
    labels = _check_labels("labels", labels)
    n_rows = len(labels)
    num_nodes = _check_num_nodes(num_nodes, n_rows)
    alpha = check_real("alpha", alpha, POSITIVE)
    min_size = check_int("min_size", min_size, low=1)
    if min_size * num_nodes > n_rows:
        raise ConfigError(
            f"`min_size` * `num_nodes` must be <= the number of rows ({n_rows}); got {min_size} * {num_nodes}"
        )
    rng = check_seed(seed)
    _, codes = np.unique(labels, return_inverse=True)
    by_class = [rng.permutation(np.flatnonzero(codes == c)) for c in range(int(codes.max()) + 1)]
    class_sizes = np.array([len(rows) for rows in by_class])
    for _ in range(MAX_DIRICHLET_DRAWS):
        proportions = rng.dirichlet(np.full(num_nodes, alpha), size=len(by_class))
        # Cut each class's shuffled rows at the cumulative proportions; the last cut is pinned to
        # the class size so floating-point sums just below 1 never drop a row.
        cuts = np.floor(np.cumsum(proportions, axis=1) * class_sizes[:, None]).astype(np.int64)
        cuts[:, -1] = class_sizes
        counts = np.diff(cuts, axis=1, prepend=0)
        if counts.sum(axis=0).min() >= min_size:
            break
    else:
        raise ConfigError(
            f"dirichlet could not give each of {num_nodes} nodes `min_size` >= {min_size} rows in "
            f"{MAX_DIRICHLET_DRAWS} draws with `alpha` = {alpha:g}; raise alpha, or lower min_size or num_nodes"
        )
    parts: list[list[Indices]] = [[] for _ in range(num_nodes)]
    for rows, class_cuts in zip(by_class, cuts, strict=True):
        for node, piece in enumerate(np.split(rows, class_cuts[:-1])):
            parts[node].append(piece)
    return _sorted_parts([np.concatenate(pieces) for pieces in parts])


def shards(labels: ArrayLike, num_nodes: int, classes_per_node: int, seed: int) -> list[Indices]:
    """Pathological non-IID (McMahan et al. 2017): each node gets ``classes_per_node`` label-sorted shards.

    Rows are sorted by label (ties in random order), cut into ``num_nodes * classes_per_node``
    equal shards, and each node receives that many shards at random. A node therefore holds
    about ``classes_per_node`` classes: exactly at most that many when shard boundaries fall on
    class boundaries (balanced classes), otherwise a shard may straddle two classes.
    """
    labels = _check_labels("labels", labels)
    n_rows = len(labels)
    num_nodes = _check_num_nodes(num_nodes, n_rows)
    classes_per_node = check_int("classes_per_node", classes_per_node, low=1)
    _, codes = np.unique(labels, return_inverse=True)
    n_classes = int(codes.max()) + 1
    if classes_per_node > n_classes:
        raise ConfigError(f"`classes_per_node` must be <= the number of classes ({n_classes}); got {classes_per_node}")
    n_shards = num_nodes * classes_per_node
    if n_shards > n_rows:
        raise ConfigError(
            f"`num_nodes` * `classes_per_node` must be <= the number of rows ({n_rows}); "
            f"got {num_nodes} * {classes_per_node}"
        )
    rng = check_seed(seed)
    shuffled = rng.permutation(n_rows)
    by_label = shuffled[np.argsort(codes[shuffled], kind="stable")]
    pieces = np.array_split(by_label, n_shards)
    dealt = rng.permutation(n_shards).reshape(num_nodes, classes_per_node)
    return _sorted_parts([np.concatenate([pieces[s] for s in row]) for row in dealt])


def quantity_skew(n_rows: int, num_nodes: int, sigma: float, seed: int, *, min_size: int = 1) -> list[Indices]:
    """Quantity skew: node sizes proportional to LogNormal(0, sigma) draws, labels left IID.

    Each node first gets ``min_size`` rows; the rest are apportioned by the lognormal weights.
    ``sigma`` = 0 gives equal sizes; 1-2 gives the long tail seen across real devices.
    """
    n_rows = check_int("n_rows", n_rows, low=1)
    num_nodes = _check_num_nodes(num_nodes, n_rows)
    sigma = check_real("sigma", sigma, NON_NEGATIVE)
    min_size = check_int("min_size", min_size, low=1)
    if min_size * num_nodes > n_rows:
        raise ConfigError(
            f"`min_size` * `num_nodes` must be <= the number of rows ({n_rows}); got {min_size} * {num_nodes}"
        )
    rng = check_seed(seed)
    sizes = min_size + apportion(n_rows - min_size * num_nodes, rng.lognormal(0.0, sigma, num_nodes))
    return _sorted_parts(np.split(rng.permutation(n_rows), np.cumsum(sizes)[:-1]))


def natural(groups: ArrayLike) -> list[Indices]:
    """One node per distinct value of ``groups`` (a device, site or user id), in sorted value order.

    No randomness is involved: the data was already split this way when it was collected.
    """
    groups = _check_labels("groups", groups)
    _, codes = np.unique(groups, return_inverse=True)
    order = np.argsort(codes, kind="stable")  # stable, so rows stay ascending within a group
    return [part.astype(np.int64) for part in np.split(order, np.cumsum(np.bincount(codes))[:-1])]


def partition(name: str, dataset: Dataset, num_nodes: int, seed: int, **options: Any) -> list[Indices]:
    """Partition ``dataset`` with the partitioner called ``name``, as named in a run config.

    Options per partitioner: ``iid`` takes none; ``dirichlet`` takes ``alpha`` (required) and
    ``min_size``; ``shards`` takes ``classes_per_node`` (required); ``quantity_skew`` takes
    ``sigma`` (required) and ``min_size``; ``natural`` takes ``column`` (a feature name; by
    default the dataset's ``groups``) and needs ``num_nodes`` to equal the number of groups.
    """
    if name not in _DISPATCH:
        raise ConfigError(f"unknown partitioner {name!r}; valid partitioners are {sorted(_DISPATCH)}")
    adapter = _DISPATCH[name]
    check_call_options(f"partitioner {name!r}", adapter, options, supplied=("dataset", "num_nodes", "seed"))
    return adapter(dataset, num_nodes, seed, **options)


def _class_labels(dataset: Dataset, name: str) -> NDArray[Any]:
    if dataset.y is None or dataset.task != "classification":
        raise ConfigError(
            f"partitioner {name!r} needs class labels; dataset {dataset.name!r} is {dataset.task}"
            + (" without targets" if dataset.y is None else "")
        )
    return dataset.y


def _iid(dataset: Dataset, num_nodes: int, seed: int) -> list[Indices]:
    return iid(len(dataset), num_nodes, seed)


def _dirichlet(dataset: Dataset, num_nodes: int, seed: int, *, alpha: float, min_size: int = 1) -> list[Indices]:
    return dirichlet(_class_labels(dataset, "dirichlet"), num_nodes, alpha, seed, min_size=min_size)


def _shards(dataset: Dataset, num_nodes: int, seed: int, *, classes_per_node: int) -> list[Indices]:
    return shards(_class_labels(dataset, "shards"), num_nodes, classes_per_node, seed)


def _quantity_skew(dataset: Dataset, num_nodes: int, seed: int, *, sigma: float, min_size: int = 1) -> list[Indices]:
    return quantity_skew(len(dataset), num_nodes, sigma, seed, min_size=min_size)


def _natural(dataset: Dataset, num_nodes: int, seed: int, *, column: str | None = None) -> list[Indices]:
    del seed  # natural partitions are fixed by the data; the uniform signature still carries a seed
    if column is None:
        if dataset.groups is None:
            raise ConfigError(
                f"partitioner 'natural' needs dataset {dataset.name!r} to have `groups`, or the option `column`"
            )
        groups = dataset.groups
    elif column in dataset.feature_names:
        groups = dataset.x[:, dataset.feature_names.index(column)]
    else:
        raise ConfigError(f"`column` must be one of the feature names {list(dataset.feature_names)}; got {column!r}")
    parts = natural(groups)
    if num_nodes != len(parts):
        raise ConfigError(f"`num_nodes` must equal the number of distinct groups ({len(parts)}); got {num_nodes}")
    return parts


def _sorted_parts(parts: list[NDArray[Any]]) -> list[Indices]:
    return [np.sort(part).astype(np.int64, copy=False) for part in parts]


_DISPATCH: dict[str, Callable[..., list[Indices]]] = {
    "dirichlet": _dirichlet,
    "iid": _iid,
    "natural": _natural,
    "quantity_skew": _quantity_skew,
    "shards": _shards,
}

PARTITIONERS: tuple[str, ...] = tuple(sorted(_DISPATCH))
"""Names :func:`partition` accepts."""


def _check_num_nodes(num_nodes: object, n_rows: int) -> int:
    """Every node needs at least one row, so there can be no more nodes than rows."""
    count = check_int("num_nodes", num_nodes, low=1)
    if count > n_rows:
        raise ConfigError(f"`num_nodes` must be <= the number of rows ({n_rows}); got {count}")
    return count


def _check_labels(name: str, labels: ArrayLike) -> NDArray[Any]:
    """A non-empty 1-D array of labels (or group values)."""
    array = np.asarray(labels)
    if array.ndim != 1 or len(array) == 0:
        raise ConfigError(f"`{name}` must be a non-empty 1-D array; got shape {array.shape}")
    return array
