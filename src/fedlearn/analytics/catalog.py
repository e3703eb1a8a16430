"""The models ``fedlearn analytics`` fits by name, and the arrays a fitted one has learned.

The file-backed CLI and the coordinator's analytics API both build estimators from here, so a
model name means the same estimator with the same options wherever it is asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

ModelName = Literal["linear", "ridge", "pca", "gnb", "lda", "qda", "logistic", "covariance", "describe"]
MODELS: tuple[str, ...] = get_args(ModelName)
CLASSIFIERS = ("gnb", "lda", "qda", "logistic")
NEEDS_TARGET = ("linear", "ridge", *CLASSIFIERS)
ITERATIVE = ("logistic",)
"""Fitted by Newton rounds over the nodes rather than from the pooled summary."""
DESCRIPTION_FIELDS = ("count", "mean", "std", "min", "max", "sum")


def build_estimator(
    model: str,
    *,
    alpha: float = 1.0,
    intercept: bool = True,
    n_components: int | None = None,
    c: float = 1.0,
    max_iter: int = 100,
) -> Any:
    """A fresh, unfitted estimator for ``model`` (any of :data:`MODELS` but ``describe``)."""
    from fedlearn.analytics import (
        FederatedCovariance,
        FederatedGaussianNB,
        FederatedLinearDiscriminantAnalysis,
        FederatedLinearRegression,
        FederatedLogisticRegression,
        FederatedPCA,
        FederatedQuadraticDiscriminantAnalysis,
        FederatedRidge,
    )

    builders = {
        "linear": lambda: FederatedLinearRegression(fit_intercept=intercept),
        "ridge": lambda: FederatedRidge(alpha, fit_intercept=intercept),
        "pca": lambda: FederatedPCA(n_components),
        "gnb": FederatedGaussianNB,
        "lda": FederatedLinearDiscriminantAnalysis,
        "qda": FederatedQuadraticDiscriminantAnalysis,
        "logistic": lambda: FederatedLogisticRegression(C=c, fit_intercept=intercept, max_iter=max_iter),
        "covariance": FederatedCovariance,
    }
    return builders[model]()


def learned_arrays(estimator: Any) -> dict[str, NDArray[Any]]:
    """Every learned numeric attribute (public, ending in ``_``) of a fitted estimator, as arrays."""
    arrays: dict[str, NDArray[Any]] = {}
    for name, value in vars(estimator).items():
        if not name.endswith("_") or name.startswith("_") or value is None:
            continue
        array = np.stack(value) if isinstance(value, list) else np.asarray(value)
        if array.dtype.kind in "biuf":
            arrays[name] = array
    return arrays


def estimator_from_arrays(model: str, arrays: Mapping[str, Any], **options: Any) -> Any:
    """A fitted estimator for ``model`` rebuilt from its :func:`learned_arrays`, to use locally.

    ``options`` are :func:`build_estimator`'s. Scalars learned as Python numbers (``n_samples_seen_``)
    come back as numbers, every other attribute as an array.
    """
    estimator = build_estimator(model, **options)
    for name, value in arrays.items():
        array = np.asarray(value)
        setattr(estimator, name, array.item() if array.ndim == 0 else array)
    return estimator


def description_arrays(rows: Iterable[Mapping[str, Any]]) -> dict[str, NDArray[np.float64]]:
    """A ``describe`` table (one mapping per column; None or NaN where unknown) as one array per statistic."""
    rows = list(rows)
    return {k: np.array([np.nan if r[k] is None else r[k] for r in rows], dtype=np.float64) for k in DESCRIPTION_FIELDS}
