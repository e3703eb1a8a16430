"""Logistic regression by federated Newton steps (IRLS).

Logistic regression has no finite summary, but each Newton step does: at the current
coefficients every node returns the sums over its rows of the loss, its gradient and its
Hessian (:class:`NewtonStats`). Sums add, so the coordinator sees the pooled loss, gradient and
Hessian, adds the L2 penalty and takes the pooled Newton step. The iterates are those of a
centralised Newton solver on the pooled data, and converge quadratically to its optimum, the
same optimum scikit-learn's ``LogisticRegression`` finds: the mean loss plus
``||coef||² / (2 C n)``, intercepts unpenalised.

The multinomial model has one coefficient row per class; adding a constant to every class's
intercept (or, with ``C = inf``, to any unpenalised column) changes nothing, so the Hessian is
singular along those directions. A zero-cost gauge term ``ρ/2 (Σ_k θ_kj)²`` on those columns
pins the representative with zero class-sum, the convention scikit-learn reports.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit, log_softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from fedlearn.analytics._base import ProbabilisticClassifierMixin, solve_psd
from fedlearn.analytics.classes import class_codes
from fedlearn.core.checks import NON_NEGATIVE, POSITIVE, check_int, check_real
from fedlearn.core.errors import ConfigError, ValidationError
from fedlearn.core.params import ParamSet

_BLOCK_VALUES = 1 << 22  # rows × parameters per block when forming the Hessian: ~32 MB of float64


@dataclass(frozen=True, slots=True, kw_only=True)
class NewtonStats:
    """Row sums of the unpenalised loss, gradient and Hessian at one coefficient point."""

    count: int
    loss: float
    gradient: NDArray[np.float64]
    hessian: NDArray[np.float64]

    def merge(self, other: NewtonStats) -> NewtonStats:
        return NewtonStats(
            count=self.count + other.count,
            loss=self.loss + other.loss,
            gradient=self.gradient + other.gradient,
            hessian=self.hessian + other.hessian,
        )

    def to_params(self) -> ParamSet:
        return ParamSet(
            {
                "count": np.int64(self.count),
                "loss": np.float64(self.loss),
                "gradient": self.gradient,
                "hessian": self.hessian,
            }
        )

    @classmethod
    def from_params(cls, params: ParamSet, size: int) -> NewtonStats:
        expected = {"count": (), "loss": (), "gradient": (size,), "hessian": (size, size)}
        for name, shape in expected.items():
            if name not in params or params[name].shape != shape:
                raise ValidationError(f"Newton statistics: {name!r} must have shape {shape}")
            if not np.isfinite(params[name]).all():
                raise ValidationError(f"Newton statistics: {name!r} is not finite")
        return cls(
            count=int(params["count"]),
            loss=float(params["loss"]),
            gradient=np.array(params["gradient"]),
            hessian=np.array(params["hessian"]),
        )


class NewtonOracle(Protocol):
    """Pooled :class:`NewtonStats` at ``theta``: local arrays, or one federated round."""

    def __call__(self, theta: NDArray[np.float64]) -> NewtonStats: ...


def logistic_stats(
    chunks: Iterable[NDArray[np.float64]],
    theta: NDArray[np.float64],
    classes: NDArray[np.int64],
    *,
    fit_intercept: bool,
) -> NewtonStats:
    """One pass over ``chunks`` (features then the class-code column) at coefficients ``theta``.

    ``theta`` has one row per class (one row in the binary case) and one column per feature,
    plus a last column for the intercept when ``fit_intercept``.
    """
    rows, width = theta.shape
    size = theta.size
    total = NewtonStats(count=0, loss=0.0, gradient=np.zeros(size), hessian=np.zeros((size, size)))
    block = max(1, _BLOCK_VALUES // size)
    for chunk in chunks:
        for start in range(0, len(chunk), block):
            part = chunk[start : start + block]
            x = np.column_stack([part[:, :-1], np.ones(len(part))]) if fit_intercept else part[:, :-1]
            if x.shape[1] != width:
                raise ConfigError(f"coefficients have {width} columns but the data gives {x.shape[1]}")
            codes = class_codes(part[:, -1])
            index = np.searchsorted(classes, codes)
            if (index >= len(classes)).any() or (classes[np.minimum(index, len(classes) - 1)] != codes).any():
                raise ConfigError(f"the data holds a class outside the agreed classes {classes.tolist()}")
            total = total.merge(_binary(x, index, theta[0]) if rows == 1 else _multinomial(x, index, theta))
    return total


def _binary(x: NDArray[np.float64], y: NDArray[np.intp], w: NDArray[np.float64]) -> NewtonStats:
    z = x @ w
    p = expit(z)
    loss = float(np.sum(np.logaddexp(0.0, z) - y * z))
    return NewtonStats(count=len(x), loss=loss, gradient=x.T @ (p - y), hessian=x.T @ (x * (p * (1.0 - p))[:, None]))


def _multinomial(x: NDArray[np.float64], y: NDArray[np.intp], theta: NDArray[np.float64]) -> NewtonStats:
    n, k = len(x), len(theta)
    z = x @ theta.T
    log_p = log_softmax(z, axis=1)
    p = np.exp(log_p)
    loss = float(-np.sum(log_p[np.arange(n), y]))
    residual = p.copy()
    residual[np.arange(n), y] -= 1.0
    gradient = (residual.T @ x).ravel()
    outer = (p[:, :, None] * x[:, None, :]).reshape(n, -1)  # row i: vec(p_i x_iᵀ)
    hessian = -(outer.T @ outer)
    width = x.shape[1]
    for c in range(k):
        hessian[c * width : (c + 1) * width, c * width : (c + 1) * width] += x.T @ (x * p[:, c : c + 1])
    return NewtonStats(count=n, loss=loss, gradient=gradient, hessian=hessian)


class FederatedLogisticRegression(ProbabilisticClassifierMixin, ClassifierMixin, BaseEstimator):
    """L2-penalised logistic regression (binary or multinomial), solved by Newton's method.

    Equal, at convergence, to :class:`sklearn.linear_model.LogisticRegression` with the same
    ``C`` fitted on the pooled data. ``fit(X, y)`` solves on local arrays; a federation calls
    :meth:`fit_oracle` with an oracle that runs one round per call. ``tol`` bounds the largest
    gradient entry and half the squared Newton decrement of the mean loss, as scikit-learn's
    Newton solvers do; a final Newton step then brings the answer to machine precision.

    Attributes: ``classes_``, ``coef_`` (1 or n_classes × n_features), ``intercept_``,
    ``n_iter_`` (Newton steps), ``n_rounds_`` (oracle calls, i.e. federated rounds).
    """

    def __init__(self, *, C: float = 1.0, fit_intercept: bool = True, max_iter: int = 100, tol: float = 1e-10) -> None:
        self.C = C
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        x, target = validate_data(self, X, y, dtype=np.float64)
        x = np.asarray(x)
        check_classification_targets(target)
        labels, codes = np.unique(target, return_inverse=True)
        data = np.column_stack([x, codes])
        classes = np.arange(len(labels), dtype=np.int64)
        fit_intercept = bool(self.fit_intercept)
        self.fit_oracle(
            lambda theta: logistic_stats([data], theta, classes, fit_intercept=fit_intercept),
            classes=classes,
            n_features=x.shape[1],
        )
        self.classes_ = labels
        return self

    def fit_oracle(self, oracle: NewtonOracle, *, classes: ArrayLike, n_features: int) -> Self:
        """Newton's method where every evaluation is ``oracle(theta)``; returns ``self``."""
        inverse_penalty = self.C  # C = inf (no penalty) is allowed, but an Interval holds only finite numbers
        c = math.inf if inverse_penalty == math.inf else check_real("C", inverse_penalty, POSITIVE)
        tol = check_real("tol", self.tol, NON_NEGATIVE)
        max_iter = check_int("max_iter", self.max_iter, low=1)
        self.classes_ = np.asarray(classes)
        k = len(self.classes_)
        if k < 2:
            raise ConfigError(f"logistic regression needs at least 2 classes; got {k} class")
        rows, width = (1 if k == 2 else k), n_features + int(bool(self.fit_intercept))
        penalty, gauge = self._penalty_masks(rows, width, n_features, c)
        theta = np.zeros((rows, width))
        stats = oracle(theta)
        if stats.count == 0:
            raise ConfigError("logistic regression cannot be fitted on 0 rows")
        objective = _objective(stats, theta, penalty)
        self.n_iter_, self.n_rounds_ = 0, 1
        converged = False
        for _ in range(max_iter):
            gradient, hessian = _derivatives(stats, theta, penalty, gauge)
            step = -solve_psd(hessian, gradient)
            decrement = float(-gradient @ step)
            self.n_iter_ += 1
            if np.max(np.abs(gradient)) / stats.count <= tol and 0.5 * decrement / stats.count <= tol:
                theta = theta + step.reshape(rows, width)  # quadratic convergence: this one is free
                converged = True
                break
            theta, stats, objective = self._line_search(
                oracle, theta, step, objective=objective, slope=-decrement, penalty=penalty
            )
        if not converged:
            warnings.warn(
                f"Newton's method did not converge in {max_iter} iterations; raise `max_iter` or `tol`",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.n_features_in_ = n_features
        self.coef_ = theta[:, :n_features].copy()
        self.intercept_ = theta[:, n_features].copy() if self.fit_intercept else np.zeros(rows)
        return self

    @staticmethod
    def _penalty_masks(
        rows: int, width: int, n_features: int, c: float
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        penalised = np.zeros((rows, width))
        penalised[:, :n_features] = 0.0 if c == math.inf else 1.0 / c
        # columns along which a multinomial model is invariant: unpenalised ones
        gauge = np.zeros(width, dtype=bool) if rows == 1 else penalised[0] == 0.0
        return penalised.ravel(), gauge

    def _line_search(
        self,
        oracle: NewtonOracle,
        theta: NDArray[np.float64],
        step: NDArray[np.float64],
        *,
        objective: float,
        slope: float,
        penalty: NDArray[np.float64],
    ) -> tuple[NDArray[np.float64], NewtonStats, float]:
        """Backtracking on the pooled objective; each trial point costs one round."""
        t = 1.0
        for _ in range(30):
            trial = theta + t * step.reshape(theta.shape)
            stats = oracle(trial)
            self.n_rounds_ += 1
            value = _objective(stats, trial, penalty)
            if value <= objective + 1e-4 * t * slope or abs(value - objective) <= 1e-14 * abs(objective):
                return trial, stats, value
            t *= 0.5
        raise ConfigError("the Newton line search failed to decrease the loss; the data may be separable: lower `C`")

    def decision_function(self, X: ArrayLike) -> NDArray[np.float64]:
        check_is_fitted(self)
        x = np.asarray(validate_data(self, X, dtype=np.float64, reset=False))
        scores = x @ self.coef_.T + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def _joint_log_likelihood(self, X: ArrayLike) -> NDArray[np.float64]:
        scores = self.decision_function(X)
        return np.column_stack([np.zeros_like(scores), scores]) if scores.ndim == 1 else scores


def _objective(stats: NewtonStats, theta: NDArray[np.float64], penalty: NDArray[np.float64]) -> float:
    """Loss sum plus the L2 penalty: n times scikit-learn's objective, with the same minimiser."""
    flat = theta.ravel()
    return stats.loss + 0.5 * float(np.sum(penalty * flat**2))


def _derivatives(
    stats: NewtonStats, theta: NDArray[np.float64], penalty: NDArray[np.float64], gauge: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    rows, width = theta.shape
    gradient = stats.gradient + penalty * theta.ravel()
    hessian = stats.hessian + np.diag(penalty)
    # The gauge term is zero on the iterates (they start at 0 and Newton steps keep every
    # class-sum at zero), so the objective the line search checks can leave it out.
    if gauge.any():
        rho = max(float(np.trace(stats.hessian)) / len(hessian), 1e-12)
        for j in np.flatnonzero(gauge):
            idx = np.arange(rows) * width + j
            gradient[idx] += rho * theta[:, j].sum()
            hessian[np.ix_(idx, idx)] += rho
    return gradient, hessian
