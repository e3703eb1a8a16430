"""Linear and quadratic discriminant analysis from per-class means and co-moments.

scikit-learn's ``svd`` solvers take singular value decompositions of centred data; the squared
singular values and right singular vectors of a centred block are the eigenvalues and
eigenvectors of its co-moment matrix, so each step is reproduced from the summary. The small
between-class decomposition (classes × features) is done on the coordinator as scikit-learn does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import linalg
from sklearn.base import ClassifierMixin, TransformerMixin

from fedlearn.analytics._base import ProbabilisticClassifierMixin, SummaryEstimator, check_priors
from fedlearn.analytics.summary import Summary
from fedlearn.core.checks import NON_NEGATIVE, UNIT, Interval, Options, check, check_real
from fedlearn.core.errors import ConfigError


def _eigh_descending(matrix: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    values, vectors = np.linalg.eigh(matrix)
    return np.maximum(values[::-1], 0.0), vectors[:, ::-1]


def _shrunk(cov: NDArray[np.float64], shrinkage: float | None) -> NDArray[np.float64]:
    """scikit-learn's ``shrunk_covariance``: blend towards the mean variance times identity."""
    if not shrinkage:
        return cov
    mu = np.trace(cov) / len(cov)
    return (1.0 - shrinkage) * cov + shrinkage * mu * np.eye(len(cov))


def _check_shrinkage(shrinkage: object, solver: str) -> float | None:
    if shrinkage is None:
        return None
    if shrinkage == "auto":
        raise ConfigError(
            "`shrinkage='auto'` (Ledoit-Wolf) needs fourth moments, which summaries do not hold; pass a float in [0, 1]"
        )
    value = check_real("shrinkage", shrinkage, UNIT)
    if solver == "svd":
        raise ConfigError(
            f"`shrinkage` must be in [0, 1] with solver 'lsqr' or 'eigen'; got {shrinkage!r} with solver {solver!r}"
        )
    return value


class FederatedLinearDiscriminantAnalysis(
    ProbabilisticClassifierMixin, ClassifierMixin, TransformerMixin, SummaryEstimator
):
    """LDA equal to :class:`sklearn.discriminant_analysis.LinearDiscriminantAnalysis` on pooled data.

    Solvers ``svd`` (default), ``lsqr`` and ``eigen`` as in scikit-learn; ``shrinkage`` takes a
    float (not ``'auto'``). Attributes: ``coef_``, ``intercept_``, ``means_``, ``priors_``,
    ``xbar_`` and ``scalings_`` (svd), ``covariance_``, ``explained_variance_ratio_``.
    """

    _target = "class"

    def __init__(
        self,
        *,
        solver: str = "svd",
        shrinkage: float | None = None,
        priors: ArrayLike | None = None,
        n_components: int | None = None,
        store_covariance: bool = False,
        tol: float = 1e-4,
    ) -> None:
        self.solver = solver
        self.shrinkage = shrinkage
        self.priors = priors
        self.n_components = n_components
        self.store_covariance = store_covariance
        self.tol = tol

    def _solve(self, summary: Summary) -> None:
        check("solver", self.solver, Options(("svd", "lsqr", "eigen")))
        shrinkage = _check_shrinkage(self.shrinkage, self.solver)
        tol = check_real("tol", self.tol, NON_NEGATIVE)
        assert summary.by_class is not None
        per_class = summary.by_class.moments
        n, k, d = summary.count, len(per_class.count), per_class.n_features
        if k < 2 or n <= k:
            raise ConfigError(f"LDA needs at least 2 classes and more rows than classes; got {k} classes, {n} rows")
        limit = min(k - 1, d)  # there are no more discriminant directions than this
        self._max_components = (
            limit
            if self.n_components is None
            else int(check("n_components", self.n_components, Interval(0, limit, integer=True)))
        )
        self.priors_ = check_priors(self.priors, per_class.count)
        self.means_ = per_class.mean.copy()
        class_covs = [_shrunk(per_class.comoment[i] / per_class.count[i], shrinkage) for i in range(k)]
        covariance = np.einsum("k,kij->ij", self.priors_, np.asarray(class_covs))
        if self.solver == "svd":
            self._solve_svd(per_class.comoment.sum(axis=0), n, tol)
            if self.store_covariance:
                self.covariance_ = covariance
        elif self.solver == "lsqr":
            self.covariance_ = covariance
            self.coef_ = linalg.lstsq(covariance, self.means_.T)[0].T
            self.intercept_ = -0.5 * np.sum(self.means_ * self.coef_, axis=1) + np.log(self.priors_)
        else:
            self.covariance_ = covariance
            total = _shrunk(summary.features.covariance(ddof=0), shrinkage)
            try:
                values, vectors = linalg.eigh(total - covariance, covariance)
            except linalg.LinAlgError as exc:
                raise ConfigError(f"the within-class covariance is singular ({exc}); set `shrinkage`") from exc
            self.explained_variance_ratio_ = np.sort(values / np.sum(values))[::-1][: self._max_components]
            self.scalings_ = vectors[:, np.argsort(values)[::-1]]
            self.coef_ = self.means_ @ self.scalings_ @ self.scalings_.T
            self.intercept_ = -0.5 * np.sum(self.means_ * self.coef_, axis=1) + np.log(self.priors_)
        if k == 2:  # scikit-learn reports the binary case as one decision function
            self.coef_ = (self.coef_[1] - self.coef_[0])[None, :]
            self.intercept_ = np.array([self.intercept_[1] - self.intercept_[0]])
        self._n_features_out = self._max_components

    def _solve_svd(self, within: NDArray[np.float64], n: int, tol: float) -> None:
        k = len(self.means_)
        self.xbar_ = self.priors_ @ self.means_
        std = np.sqrt(np.maximum(np.diag(within), 0.0) / n)
        std[std == 0] = 1.0
        # singular values and vectors of the within-class centred, scaled data, from its Gram matrix
        squared, vectors = _eigh_descending(within / np.outer(std, std) / n)
        singular = np.sqrt(squared)
        rank = int(np.sum(singular > tol))
        scalings = (vectors[:, :rank].T / std).T / singular[:rank]
        fac = 1.0 if k == 1 else 1.0 / (k - 1)
        centres = (np.sqrt(n * self.priors_ * fac) * (self.means_ - self.xbar_).T).T @ scalings
        _, between, vt = linalg.svd(centres, full_matrices=False)
        self.explained_variance_ratio_ = (between**2 / np.sum(between**2))[: self._max_components]
        rank = int(np.sum(between > tol * between[0]))
        self.scalings_ = scalings @ vt.T[:, :rank]
        coef = (self.means_ - self.xbar_) @ self.scalings_
        self.intercept_ = -0.5 * np.sum(coef**2, axis=1) + np.log(self.priors_)
        self.coef_ = coef @ self.scalings_.T
        self.intercept_ -= self.xbar_ @ self.coef_.T

    def decision_function(self, X: ArrayLike) -> NDArray[np.float64]:
        scores = self._validated(X) @ self.coef_.T + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def _joint_log_likelihood(self, X: ArrayLike) -> NDArray[np.float64]:
        scores = self.decision_function(X)
        return np.column_stack([np.zeros_like(scores), scores]) if scores.ndim == 1 else scores

    def transform(self, X: ArrayLike) -> NDArray[np.float64]:
        if self.solver == "lsqr":
            raise ConfigError("transform needs solver 'svd' or 'eigen'; 'lsqr' finds no projection")
        x = self._validated(X)
        if self.solver == "svd":
            return (x - self.xbar_) @ self.scalings_[:, : self._max_components]
        return x @ self.scalings_[:, : self._max_components]


class FederatedQuadraticDiscriminantAnalysis(ProbabilisticClassifierMixin, ClassifierMixin, SummaryEstimator):
    """QDA equal to :class:`sklearn.discriminant_analysis.QuadraticDiscriminantAnalysis` on pooled data.

    Attributes: ``means_``, ``priors_``, ``rotations_`` and ``scalings_`` (per class, the
    eigenvectors and eigenvalues of the class covariance), ``covariance_`` when stored.
    """

    _target = "class"

    def __init__(
        self,
        *,
        solver: str = "svd",
        shrinkage: float | None = None,
        priors: ArrayLike | None = None,
        reg_param: float = 0.0,
        store_covariance: bool = False,
        tol: float = 1e-4,
    ) -> None:
        self.solver = solver
        self.shrinkage = shrinkage
        self.priors = priors
        self.reg_param = reg_param
        self.store_covariance = store_covariance
        self.tol = tol

    def _solve(self, summary: Summary) -> None:
        check("solver", self.solver, Options(("svd", "eigen")))
        shrinkage = _check_shrinkage(self.shrinkage, self.solver)
        reg = check_real("reg_param", self.reg_param, NON_NEGATIVE)
        tol = check_real("tol", self.tol, NON_NEGATIVE)
        assert summary.by_class is not None
        per_class = summary.by_class.moments
        if len(per_class.count) < 2:
            raise ConfigError(f"QDA needs at least 2 classes; got {len(per_class.count)} class")
        scalings: list[Any] = []
        rotations: list[Any] = []
        covariances: list[Any] = []
        for i, label in enumerate(summary.by_class.classes):
            rows = int(per_class.count[i])
            if rows < 2:
                raise ConfigError(f"class {int(label)} has {rows} row; QDA needs at least 2 per class")
            cov = per_class.comoment[i] / rows
            if self.solver == "eigen":
                cov = _shrunk(cov, shrinkage)
            scaling, rotation = _eigh_descending(cov)
            if self.solver == "svd":
                scaling = (1.0 - reg) * scaling + reg
            if np.sum(scaling > tol) < per_class.n_features:
                fix = "shrinkage" if self.solver == "eigen" else "reg_param"
                raise ConfigError(f"the covariance matrix of class {int(label)} is not full rank; increase `{fix}`")
            scalings.append(scaling)
            rotations.append(rotation)
            covariances.append((rotation * scaling) @ rotation.T if self.solver == "svd" else cov)
        self.means_ = per_class.mean.copy()
        self.priors_ = check_priors(self.priors, per_class.count)
        self.scalings_ = scalings
        self.rotations_ = rotations
        if self.store_covariance:
            self.covariance_ = covariances

    def _joint_log_likelihood(self, X: ArrayLike) -> NDArray[np.float64]:
        x = self._validated(X)
        norm2 = np.column_stack(
            [
                np.sum(((x - m) @ (r / np.sqrt(s))) ** 2, axis=1)
                for m, r, s in zip(self.means_, self.rotations_, self.scalings_, strict=True)
            ]
        )
        log_det = np.array([np.sum(np.log(s)) for s in self.scalings_])
        return -0.5 * (norm2 + log_det) + np.log(self.priors_)

    def decision_function(self, X: ArrayLike) -> NDArray[np.float64]:
        scores = self._joint_log_likelihood(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores
