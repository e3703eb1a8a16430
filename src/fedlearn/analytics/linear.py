"""Least squares and ridge regression solved from the R factor of ``[X | y]``.

With ``R = [[R11, z], [0, ρ]]`` the R factor of the centred rows of ``[X | y]``, least squares is
``R11 w = z`` and ``b = ȳ - x̄·w``, which is what scikit-learn solves after centring the data;
without an intercept the same holds for the R factor of the rows themselves. Ridge appends
``√α·I`` below ``R11`` (and zeros below ``z``) and factors again: that is least squares on the rows
with ``α``'s penalty rows added, the textbook way to solve ridge without the normal equations.

Solving from ``R`` is backward stable, so the error grows with ``cond(X)``, not with ``cond(X)²`` as
from ``XᵀX``: within 1e-8 of the exact answer up to ``cond(X) = 1e6`` when the residual is small
(see BENCHMARKS.md). Columns collinear to within ``max(rows, features)`` units of rounding count
as exactly collinear, and the minimum-norm solution is returned, as ``numpy.linalg.lstsq`` does.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import linalg
from sklearn.base import RegressorMixin

from fedlearn.analytics._base import SummaryEstimator, solving_factor
from fedlearn.analytics.rfactor import triangular
from fedlearn.analytics.summary import Summary
from fedlearn.core.checks import NON_NEGATIVE, check_real


def least_squares_from_r(r: NDArray[np.float64], *, alpha: float, rows: int) -> NDArray[np.float64]:
    """Minimise ``||Xw - y||² + α||w||²`` given the R factor of ``[X | y]`` (target last)."""
    d = len(r) - 1
    system = r[:d]  # [R11 | z]; the last row only holds the residual norm
    if alpha > 0:
        system = triangular(np.vstack([system, np.hstack([np.sqrt(alpha) * np.eye(d), np.zeros((d, 1))])]), d + 1)[:d]
    cutoff = np.finfo(np.float64).eps * max(rows, d)
    return np.asarray(linalg.lstsq(system[:, :d], system[:, d], cond=cutoff, check_finite=False)[0])


def solve_least_squares(
    summary: Summary, *, alpha: float, fit_intercept: bool, model: str
) -> tuple[NDArray[np.float64], float]:
    """Coefficients and intercept of ridge regression (``alpha = 0``: ordinary least squares)."""
    d = summary.spec.n_features
    factor = solving_factor(summary, d + 1, model)
    r = factor.r if fit_intercept else factor.uncentred()
    coef = least_squares_from_r(r, alpha=alpha, rows=summary.count)
    intercept = float(factor.mean[d] - factor.mean[:d] @ coef) if fit_intercept else 0.0
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
        self.coef_, self.intercept_ = solve_least_squares(
            summary, alpha=0.0, fit_intercept=bool(self.fit_intercept), model=type(self).__name__
        )


class FederatedRidge(_LinearModel):
    """L2-penalised least squares, equal to :class:`sklearn.linear_model.Ridge` on the pooled data.

    The intercept, when fitted, is not penalised, as in scikit-learn.
    """

    def __init__(self, alpha: float = 1.0, *, fit_intercept: bool = True) -> None:
        self.alpha = alpha
        self.fit_intercept = fit_intercept

    def _solve(self, summary: Summary) -> None:
        alpha = check_real("alpha", self.alpha, NON_NEGATIVE)
        self.coef_, self.intercept_ = solve_least_squares(
            summary, alpha=alpha, fit_intercept=bool(self.fit_intercept), model=type(self).__name__
        )
