"""Principal component analysis from the R factor of the centred features.

With ``Xc = QR``, the singular values and right singular vectors of the small ``R`` are those of
``Xc``: this is scikit-learn's ``full`` solver (an SVD of the centred data) without the data. It
keeps ``cond(Xc)``, where an eigendecomposition of the covariance, like scikit-learn's
``covariance_eigh`` (its default when rows outnumber features ten to one), squares it: the
smallest variances and their components then lose digits. Signs follow scikit-learn's rule (the
largest entry of each component is positive), so components compare directly with
:class:`sklearn.decomposition.PCA`.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import linalg
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from fedlearn.analytics._base import SummaryEstimator, solving_factor
from fedlearn.analytics.summary import Summary
from fedlearn.core.checks import Interval, check
from fedlearn.core.errors import ConfigError


def sklearn_sign_convention(vectors: NDArray[np.float64]) -> NDArray[np.float64]:
    """Flip each row so that its entry of largest magnitude is positive (scikit-learn's ``svd_flip``)."""
    biggest = np.argmax(np.abs(vectors), axis=1)
    signs = np.sign(vectors[np.arange(len(vectors)), biggest])
    signs[signs == 0] = 1.0
    return vectors * signs[:, None]


class FederatedPCA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, SummaryEstimator):
    """PCA equal to :class:`sklearn.decomposition.PCA` fitted on the pooled data.

    ``n_components``: ``None`` keeps all, an int keeps that many, a float in (0, 1) keeps the
    fewest components explaining more than that fraction of the variance.

    Attributes follow scikit-learn: ``components_``, ``explained_variance_``,
    ``explained_variance_ratio_``, ``singular_values_``, ``mean_``, ``noise_variance_``,
    ``n_components_``, ``n_samples_``.
    """

    def __init__(self, n_components: int | float | None = None, *, whiten: bool = False) -> None:
        self.n_components = n_components
        self.whiten = whiten

    def _solve(self, summary: Summary) -> None:
        n, d = summary.count, summary.spec.n_features
        if n < 2:
            raise ConfigError(f"FederatedPCA needs at least 2 rows; got n_samples={n}")
        factor = solving_factor(summary, d, type(self).__name__)
        _, singular, right = linalg.svd(factor.r, check_finite=False)
        variance = singular**2 / (n - 1)
        components = sklearn_sign_convention(right)
        limit = min(n, d)
        ratio = variance / variance.sum() if variance.sum() > 0 else np.zeros_like(variance)
        k = self._count_components(ratio, limit)
        self.mean_ = factor.mean.copy()
        self.n_samples_ = n
        self.n_components_ = k
        self.components_ = components[:k]
        self.explained_variance_ = variance[:k]
        self.explained_variance_ratio_ = ratio[:k]
        self.singular_values_ = singular[:k]
        self.noise_variance_ = float(variance[k:limit].mean()) if k < limit else 0.0
        self._n_features_out = k

    def _count_components(self, ratio: NDArray[np.float64], limit: int) -> int:
        k = self.n_components
        if k is None:
            return limit
        if isinstance(k, Integral) and not isinstance(k, bool):
            # there are no more components than min(n_samples, n_features)
            return int(check("n_components", k, Interval(0, limit, integer=True)))
        if isinstance(k, Real) and 0 < k < 1:
            return int(np.searchsorted(np.cumsum(ratio), k, side="right") + 1)
        # a union of constraints, which one Interval cannot say
        raise ConfigError(f"`n_components` must be None, an int or a float in (0, 1); got {k!r}")

    def transform(self, X: ArrayLike) -> NDArray[np.float64]:
        projected = (self._validated(X) - self.mean_) @ self.components_.T
        if self.whiten:
            projected /= np.sqrt(self.explained_variance_)
        return projected

    def inverse_transform(self, X: ArrayLike) -> NDArray[np.float64]:
        check_is_fitted(self)
        z = np.asarray(X, dtype=np.float64)
        scale = np.sqrt(self.explained_variance_)[:, None] if self.whiten else 1.0
        return z @ (self.components_ * scale) + self.mean_
