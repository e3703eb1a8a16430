"""Data and a tiny FedAvg loop shared by the client tests.

``run_fedavg`` is the textbook algorithm written out in a few lines (weighted mean of the nodes'
parameters, one fresh seed per node and round) so trainer tests do not depend on the engine.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np

from fedlearn.client.trainer import Learner, NodeState
from fedlearn.core.messages import Scalar
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import Dataset


@functools.cache
def digits() -> tuple[Dataset, Dataset]:
    """scikit-learn's digits, standardised and split 80/20 by class, as ``load_dataset`` serves it."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    std = x.std(axis=0)
    x = ((x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)).astype(np.float32)
    rng = np.random.default_rng(0)
    test = np.concatenate([rng.permutation(np.flatnonzero(y == c))[: round(0.2 * np.sum(y == c))] for c in range(10)])
    is_test = np.zeros(len(y), dtype=bool)
    is_test[test] = True
    full = Dataset(x=x, y=y.astype(np.int64), n_classes=10, name="digits")
    return full.subset(np.flatnonzero(~is_test)), full.subset(np.flatnonzero(is_test))


def iid_parts(data: Dataset, num_nodes: int, seed: int) -> list[Dataset]:
    order = np.random.default_rng(seed).permutation(len(data))
    return [data.subset(np.sort(ix)) for ix in np.array_split(order, num_nodes)]


def dirichlet_parts(data: Dataset, num_nodes: int, alpha: float, seed: int) -> list[Dataset]:
    """Label skew: each class is spread over the nodes in Dirichlet(alpha) proportions."""
    assert data.y is not None
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(num_nodes)]
    for c in range(data.n_classes):
        rows = rng.permutation(np.flatnonzero(data.y == c))
        cuts = (np.cumsum(rng.dirichlet([alpha] * num_nodes)) * len(rows)).astype(int)[:-1]
        for node, chunk in enumerate(np.split(rows, cuts)):
            parts[node] += chunk.tolist()
    return [data.subset(np.sort(np.array(p, dtype=np.int64))) for p in parts if p]


def run_fedavg(
    learner: Learner, parts: Sequence[Dataset], *, rounds: int, config: Mapping[str, Scalar], seed: int
) -> ParamSet:
    """FedAvg: every node fits from the global model; the new model is the example-weighted mean."""
    trainers = [learner.trainer(p) for p in parts]
    states: list[NodeState] = [{} for _ in parts]
    params = learner.init_params(seed)
    for r in range(rounds):
        total = {k: np.zeros(v.shape, dtype=np.float64) for k, v in params.items()}
        examples = 0
        for i, (trainer, state) in enumerate(zip(trainers, states, strict=True)):
            result = trainer.fit(params, {**config, "seed": seed * 1_000_003 + r * 1000 + i}, state)
            for k, v in result.params.items():
                total[k] += result.num_examples * v.astype(np.float64)
            examples += result.num_examples
        params = ParamSet({k: (total[k] / examples).astype(params[k].dtype) for k in params})
    return params


def tiny_classification(rows: int = 60, features: int = 5, classes: int = 3, seed: int = 0) -> Dataset:
    """Separable-ish blobs: small enough for per-test use, hard enough that training moves things."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, rows)
    centres = rng.standard_normal((classes, features)) * 2
    x = (centres[y] + rng.standard_normal((rows, features))).astype(np.float32)
    return Dataset(x=x, y=y.astype(np.int64), n_classes=classes, name="tiny")


def tiny_regression(rows: int = 60, features: int = 5, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features)).astype(np.float32)
    y = (x @ rng.standard_normal(features) + 0.5 + 0.1 * rng.standard_normal(rows)).astype(np.float32)
    return Dataset(x=x, y=y, task="regression", name="tiny-regression")
