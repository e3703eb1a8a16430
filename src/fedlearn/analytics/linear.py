"""Least squares and ridge regression solved from the moments of ``[X | y]``.

With an intercept the normal equations use the centred co-moments, ``(Cxx + αI) w = Cxy`` and
``b = ȳ - x̄·w``, which is what scikit-learn solves after centring the data; without one they use
the raw cross-products ``XᵀX`` and ``Xᵀy``. The answer is the pooled-data answer: its accuracy
is that of the normal equations, about ``cond(X)² × 1e-16`` relative, which is far inside 1e-8
for well-posed problems. For badly conditioned designs, prefer ridge.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import RegressorMixin

from fedlearn.analytics._base import SummaryEstimator, solve_psd
from fedlearn.analytics.summary import Summary
from fedlearn.core.checks import NON_NEGATIVE, check_real


def solve_least_squares(summary: Summary, *, alpha: float, fit_intercept: bool) -> tuple[NDArray[np.float64], float]:
    """Coefficients and intercept of ridge regression (``alpha = 0``: ordinary least squares)."""
    d = summary.spec.n_features
    moments = summary.moments
    gram = moments.comoment if fit_intercept else moments.cross_product()
    a = gram[:d, :d] + alpha * np.eye(d)
    coef = solve_psd(a, gram[:d, d])
    intercept = float(moments.mean[d] - moments.mean[:d] @ coef) if fit_intercept else 0.0
    return coef, intercept


class _LinearModel(RegressorMixin, SummaryEstimator):
    _target = "value"
    coef_: NDArray[np.float64]
    intercept_: float

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        return self._validated(X) @ self.coef_ + self.intercept_


class FederatedLinearRegression(_LinearModel):
    """Ordinary least squares, equal to :class:`sklearn.linear_model.LinearRegression` on the pooled data.

    Attributes: ``coef_`` (n_features,), ``intercept_`` (float), ``n_features_in_``,
    ``n_samples_seen_``.
    """

    def __init__(self, *, fit_intercept: bool = True) -> None:
        self.fit_intercept = fit_intercept

    def _solve(self, summary: Summary) -> None:
        self.coef_, self.intercept_ = solve_least_squares(summary, alpha=0.0, fit_intercept=bool(self.fit_intercept))


class FederatedRidge(_LinearModel):
    """L2-penalised least squares, equal to :class:`sklearn.linear_model.Ridge` on the pooled data.

    The intercept, when fitted, is not penalised, as in scikit-learn.
    """

    def __init__(self, alpha: float = 1.0, *, fit_intercept: bool = True) -> None:
        self.alpha = alpha
        self.fit_intercept = fit_intercept

    def _solve(self, summary: Summary) -> None:
        alpha = check_real("alpha", self.alpha, NON_NEGATIVE)
        self.coef_, self.intercept_ = solve_least_squares(summary, alpha=alpha, fit_intercept=bool(self.fit_intercept))
