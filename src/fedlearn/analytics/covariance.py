"""Covariance and correlation matrices and per-column summary tables, straight from the moments."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import linalg
from sklearn.covariance import log_likelihood

from fedlearn.analytics._base import SummaryEstimator
from fedlearn.analytics.moments import Moments
from fedlearn.analytics.summary import Summary


def correlation(moments: Moments) -> NDArray[np.float64]:
    """Pearson correlation matrix; a constant column correlates 0 with others and 1 with itself."""
    scale = np.sqrt(np.maximum(np.diag(moments.comoment), 0.0))
    scale[scale == 0] = np.inf
    corr = moments.comoment / np.outer(scale, scale)
    np.fill_diagonal(corr, 1.0)
    return corr


class FederatedCovariance(SummaryEstimator):
    """Maximum-likelihood covariance, equal to :class:`sklearn.covariance.EmpiricalCovariance`.

    Attributes: ``location_``, ``covariance_`` (divided by n, as scikit-learn does),
    ``precision_`` (pseudo-inverse) and, beyond scikit-learn, ``correlation_``.
    Use ``Moments.covariance(ddof=1)`` for the unbiased matrix.
    """

    def __init__(self, *, assume_centered: bool = False, store_precision: bool = True) -> None:
        self.assume_centered = assume_centered
        self.store_precision = store_precision

    def _solve(self, summary: Summary) -> None:
        moments = summary.features
        n = summary.count
        if self.assume_centered:
            self.location_ = np.zeros(moments.n_features)
            self.covariance_ = moments.cross_product() / n
        else:
            self.location_ = moments.mean.copy()
            self.covariance_ = moments.comoment / n
        self.correlation_ = correlation(moments)
        self.precision_ = linalg.pinvh(self.covariance_, check_finite=False) if self.store_precision else None

    def get_precision(self) -> NDArray[np.float64]:
        return self.precision_ if self.precision_ is not None else linalg.pinvh(self.covariance_)

    def mahalanobis(self, X: ArrayLike) -> NDArray[np.float64]:
        """Squared Mahalanobis distances of the rows of ``X`` from ``location_``."""
        centred = self._validated(X) - self.location_
        return np.sum((centred @ self.get_precision()) * centred, axis=1)

    def score(self, X: ArrayLike, y: object = None) -> float:
        """Mean Gaussian log-likelihood of ``X`` under the fitted model, as scikit-learn computes it."""
        centred = self._validated(X) - self.location_
        return float(log_likelihood(centred.T @ centred / len(centred), self.get_precision()))


@dataclass(frozen=True, slots=True, kw_only=True)
class Description:
    """Per-column statistics, like a data frame's ``describe()``; ``std`` uses ``n - 1``.

    ``min``/``max`` are NaN where rows holding the extreme were removed and not yet rescanned.
    """

    columns: tuple[str, ...]
    count: int
    mean: NDArray[np.float64]
    std: NDArray[np.float64]
    min: NDArray[np.float64]
    max: NDArray[np.float64]
    sum: NDArray[np.float64]

    def rows(self) -> list[dict[str, float | str]]:
        """One dict per column, for printing or serialising."""
        return [
            {
                "column": c,
                "count": float(self.count),
                "mean": float(self.mean[i]),
                "std": float(self.std[i]),
                "min": float(self.min[i]),
                "max": float(self.max[i]),
                "sum": float(self.sum[i]),
            }
            for i, c in enumerate(self.columns)
        ]


def describe(summary: Summary) -> Description:
    """Count, mean, standard deviation, min, max and sum of every summarised column."""
    m = summary.moments
    std = np.sqrt(m.variance(ddof=1)) if summary.count > 1 else np.full(m.n_features, np.nan)
    return Description(
        columns=summary.spec.all_columns,
        count=summary.count,
        mean=m.mean.copy(),
        std=std,
        min=m.min.copy(),
        max=m.max.copy(),
        sum=m.sum,
    )
