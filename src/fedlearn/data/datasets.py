"""Built-in offline datasets and a train/test split.

Examples, tests and benchmarks need real data that works on an air-gapped machine, so every
dataset here ships inside an installed package or is generated: scikit-learn's bundled
``digits``, ``breast_cancer``, ``wine``, ``iris`` (classification) and ``diabetes``
(regression), and the ``synthetic`` benchmark of Li et al. (2020). Nothing is downloaded.

scikit-learn is imported inside the loader, so ``import fedlearn`` does not pay for it.

Features are float32; classification labels are int64 codes 0 .. n_classes-1; regression
targets are float32. With ``standardize=True`` (the default for the scikit-learn datasets) each
feature is centred and scaled to unit variance using statistics of the *whole* dataset, before
any partitioning. That mirrors how these benchmarks are usually run, but it lets every node see
a global statistic: for a faithful federated pipeline pass ``standardize=False`` and
standardise inside the federation (e.g. with federated statistics from ``analytics``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedlearn.core.checks import BOOL, POSITIVE, check, check_call_options, check_real, check_seed
from fedlearn.core.errors import ConfigError
from fedlearn.data.dataset import Dataset
from fedlearn.data.partition import apportion
from fedlearn.data.synthetic import make_synthetic


def load_dataset(name: str, **options: Any) -> Dataset:
    """Load the built-in dataset called ``name``; see :data:`DATASETS` for the names.

    The scikit-learn datasets take one option, ``standardize`` (bool, default True).
    ``synthetic`` takes the keyword arguments of :func:`make_synthetic`; ``seed`` is required.
    """
    if name not in _LOADERS:
        raise ConfigError(f"unknown dataset {name!r}; valid datasets are {sorted(_LOADERS)}")
    loader = _LOADERS[name]
    check_call_options(f"dataset {name!r}", loader, options)
    return loader(**options)


def train_test_split(dataset: Dataset, test_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Split rows into a training and a test set, stratified by class for classification.

    The test set gets ``round(test_fraction * len(dataset))`` rows; for classification they are
    apportioned across classes in proportion to class size, so both sets keep the class mix.
    Rows keep their original order within each set. Both sets must be non-empty.
    """
    test_fraction = check_real("test_fraction", test_fraction, POSITIVE)
    if test_fraction >= 1.0:
        raise ConfigError(f"`test_fraction` must be in (0, 1); got {test_fraction}")
    rng = check_seed(seed)
    n_rows = len(dataset)
    n_test = int(np.floor(test_fraction * n_rows + 0.5))
    if not 0 < n_test < n_rows:
        raise ConfigError(
            f"`test_fraction` = {test_fraction} leaves an empty train or test set for {n_rows} rows; "
            "choose a fraction between 1/n and 1 - 1/n"
        )
    if dataset.task == "classification" and dataset.y is not None:
        _, codes = np.unique(dataset.y, return_inverse=True)
        per_class = apportion(n_test, np.bincount(codes))
        test_parts = [rng.permutation(np.flatnonzero(codes == c))[:k] for c, k in enumerate(per_class)]
        test = np.concatenate(test_parts)
    else:
        test = rng.permutation(n_rows)[:n_test]
    is_test = np.zeros(n_rows, dtype=bool)
    is_test[test] = True
    return dataset.subset(np.flatnonzero(~is_test)), dataset.subset(np.flatnonzero(is_test))


def _load_sklearn(name: str, *, standardize: bool = True) -> Dataset:
    check("standardize", standardize, BOOL)
    import sklearn.datasets

    loader = getattr(sklearn.datasets, f"load_{name}")
    # diabetes ships pre-scaled by default; load the raw values so `standardize` means one thing.
    bunch = loader(scaled=False) if name == "diabetes" else loader()
    x = np.asarray(bunch.data, dtype=np.float64)
    if standardize:
        x = _standardized(x)
    feature_names = tuple(str(f) for f in bunch.feature_names)
    if name == "diabetes":
        return Dataset(
            x=x.astype(np.float32),
            y=np.asarray(bunch.target, dtype=np.float32),
            task="regression",
            feature_names=feature_names,
            name=name,
        )
    return Dataset(
        x=x.astype(np.float32),
        y=np.asarray(bunch.target, dtype=np.int64),
        task="classification",
        n_classes=len(bunch.target_names),
        feature_names=feature_names,
        name=name,
    )


def _standardized(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Zero mean and unit variance per column; constant columns (blank digit pixels) stay at 0."""
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


_LOADERS: dict[str, Callable[..., Dataset]] = {
    name: functools.partial(_load_sklearn, name) for name in ("breast_cancer", "diabetes", "digits", "iris", "wine")
}
_LOADERS["synthetic"] = make_synthetic

DATASETS: tuple[str, ...] = tuple(sorted(_LOADERS))
"""Names :func:`load_dataset` accepts."""
