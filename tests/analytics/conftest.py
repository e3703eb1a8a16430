"""Shared data and helpers: real datasets, random unequal splits, and a federated fit helper.

"Federated" here means exactly what a federation does: each node summarises only its own rows,
the summaries are merged in a random order and grouping, and the model is solved from the merge.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn import datasets
from sklearn.preprocessing import StandardScaler

from fedlearn.analytics import DisclosurePolicy, Summary, SummarySpec, summarize

Data = tuple[NDArray[np.float64], NDArray[Any]]

OPEN = DisclosurePolicy(min_rows=0, release_extrema=True)
"""A node that shares everything a summary holds: for tests of the arithmetic, not of the policy."""


def _breast_cancer_regression() -> Data:
    x, _ = datasets.load_breast_cancer(return_X_y=True)
    return x[:, 1:], x[:, 0]  # predict mean radius from the rest: raw scales from 1e-3 to 1e3


def _wine_regression() -> Data:
    x, _ = datasets.load_wine(return_X_y=True)
    return x[:, 1:], x[:, 0]


REGRESSION: dict[str, Callable[[], Data]] = {
    "diabetes": lambda: datasets.load_diabetes(return_X_y=True),
    "make_regression": lambda: datasets.make_regression(n_samples=600, n_features=15, noise=3.0, random_state=1),
    "breast_cancer": _breast_cancer_regression,
    "wine": _wine_regression,
}

CLASSIFICATION: dict[str, Callable[[], Data]] = {
    "iris": lambda: datasets.load_iris(return_X_y=True),
    "wine": lambda: datasets.load_wine(return_X_y=True),
    "breast_cancer": lambda: datasets.load_breast_cancer(return_X_y=True),
    "digits": lambda: datasets.load_digits(return_X_y=True),
    "make_classification": lambda: datasets.make_classification(
        n_samples=800, n_features=12, n_informative=6, n_classes=4, random_state=2
    ),
}


@functools.cache
def load(kind: str, name: str, *, standardize: bool = False) -> Data:
    x, y = (REGRESSION if kind == "regression" else CLASSIFICATION)[name]()
    x = np.asarray(x, dtype=np.float64)
    if standardize:
        x = StandardScaler().fit_transform(x)
    return x, y


def random_split(n_rows: int, n_nodes: int, seed: int) -> list[NDArray[np.intp]]:
    """Shuffled rows cut into ``n_nodes`` non-empty parts of deliberately unequal sizes."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(n_nodes, 0.7))
    sizes = 1 + rng.multinomial(n_rows - n_nodes, weights)
    return np.split(rng.permutation(n_rows), np.cumsum(sizes)[:-1])


def node_summaries(
    x: NDArray[Any], y: NDArray[Any] | None, spec: SummarySpec, n_nodes: int, seed: int
) -> list[Summary]:
    """One summary per node, each from that node's rows only (guard off: tiny nodes are the point)."""
    columns = x if y is None else np.column_stack([x, y])
    return [summarize(columns[part], spec, min_rows=0) for part in random_split(len(x), n_nodes, seed)]


def merge_randomly(summaries: list[Summary], seed: int) -> Summary:
    """Merge in a random order and a random tree shape: the result must not care."""
    rng = np.random.default_rng(seed)
    pool = list(summaries)
    while len(pool) > 1:
        i, j = sorted(rng.choice(len(pool), size=2, replace=False))
        merged = pool[i].merge(pool[j])
        pool = [s for k, s in enumerate(pool) if k not in (i, j)] + [merged]
    return pool[0]


def federated(x: NDArray[Any], y: NDArray[Any] | None, spec: SummarySpec, n_nodes: int, seed: int) -> Summary:
    return merge_randomly(node_summaries(x, y, spec, n_nodes, seed), seed + 1)


def spec_for(n_features: int, *, target: bool = True, by_class: bool = False) -> SummarySpec:
    return SummarySpec(
        columns=tuple(f"x{i}" for i in range(n_features)), target="y" if target else None, by_class=by_class
    )


def assert_close(ours: Any, reference: Any, rtol: float = 1e-8) -> None:
    """Agreement to ``rtol`` relative to the reference's scale (entries near zero included)."""
    ours, reference = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    assert ours.shape == reference.shape
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    np.testing.assert_allclose(ours, reference, rtol=rtol, atol=rtol * scale)
